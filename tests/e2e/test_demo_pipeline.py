"""The README's main command, shortened: demo data -> SentencePiece -> preprocess -> TP=2 training
over two CPU processes -> export -> LAReQA evaluation; the trained model must clearly beat the
untrained one on the zero-shot demo test set."""

from __future__ import annotations

import json

from megatron_hybridir.demo.pipeline import quickstart


def test_shortened_quickstart_beats_untrained(tmp_path):
    rows = quickstart(tmp_path, steps=150)
    trained = rows["hybrid alpha=0.5 (trained)"]
    untrained = rows["untrained (same architecture)"]
    assert trained["mono_mAP"] > untrained["mono_mAP"] + 0.1, (trained, untrained)
    assert trained["multi_mAP"] > untrained["multi_mAP"] + 0.02, (trained, untrained)
    results = json.loads((tmp_path / "hybrid" / "eval" / "results.json").read_text())
    assert results["run_info"]["train_steps"] == 150 and results["run_info"]["parameters"] > 0
    assert len(results["settings"]) == 36                       # 6 X->X + 30 X->Y
    assert (tmp_path / "hybrid" / "eval" / "map_heatmap.png").stat().st_size > 0
    assert "hybrid alpha=0.5" in (tmp_path / "results.md").read_text()
