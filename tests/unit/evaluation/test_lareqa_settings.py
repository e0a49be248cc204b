"""Issue 24 item 4: a LAReQA setting nothing is asked in is n/a (null / "n/a"), never a 0.0 that
enters the means; one language makes the cross-lingual, pool and bias measures n/a; a parallel
benchmark whose languages disagree on question ids stops before encoding, naming the ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from megatron_hybridir.evaluation.encoder import Encoder
from megatron_hybridir.evaluation.runner import evaluate
from megatron_hybridir.evaluation.tasks import EvalDataError
from tests.unit.evaluation import formats
from tests.unit.evaluation.test_evaluate import _config


def _spy(monkeypatch) -> list:
    calls = []
    original = Encoder._encode
    monkeypatch.setattr(Encoder, "_encode",
                        lambda self, texts, *a, **k: calls.append(len(texts)) or original(self, texts, *a, **k))
    return calls


@pytest.mark.slow
def test_settings_without_shared_questions_are_na_and_left_out_of_the_means(tmp_path, tiny_st_model):
    # en has all 6 questions; de only paragraph 1's, xx only paragraph 0's: de and xx share none.
    first, second = ["0-0", "0-1", "0-2"], ["1-0", "1-1", "1-2"]
    data = formats.write_lareqa(tmp_path / "x", n_paragraphs=2, drop={"de": first, "xx": second})
    results = evaluate(_config(tmp_path, "mlqa-r", data, tiny_st_model))
    settings = results["settings"]
    for name in ("de->xx", "xx->de"):
        assert settings[name] == {"mAP": None, "R@1": None, "R@10": None, "queries": 0}
    cross = [settings[n]["mAP"] for n in ("en->de", "en->xx", "de->en", "xx->en")]
    assert all(v is not None for v in cross)
    assert results["metrics"]["cross_mAP"] == pytest.approx(np.mean(cross), abs=1e-12)
    langs = results["matrix"]["languages"]
    assert results["matrix"]["map"][langs.index("de")][langs.index("xx")] is None
    assert results["per_language"]["de"]["cross_mAP"] == pytest.approx(settings["de->en"]["mAP"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["settings"]["de->xx"]["mAP"] is None
    assert "2 setting(s) share no question and are n/a" in saved["notes"][0]
    md = (tmp_path / "out" / "results.md").read_text()
    de_row = next(line for line in md.splitlines() if line.startswith("| de | "))   # the matrix
    assert de_row.split(" | ")[3] == "n/a"                                            # de -> xx


def test_one_language_reports_cross_pool_and_bias_as_na(tmp_path, tiny_st_model):
    data = formats.write_lareqa(tmp_path / "x")
    results = evaluate(_config(tmp_path, "xquad-r", data, tiny_st_model, languages="[en]"))
    m = results["metrics"]
    assert m["mono_mAP"] is not None and 0 < m["mono_mAP"] <= 1
    for key in ("cross_mAP", "cross_R@1", "multi_mAP", "multi_R@10", "rank_distance",
                "same_language_top"):
        assert m[key] is None, key
    assert results["per_language"]["en"]["rank_distance"] is None
    assert results["setting_counts"] == {"monolingual": 1, "cross_lingual": 0, "multilingual_pool": 0}
    assert results["notes"][0].startswith("one language (en): cross-lingual")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| cross_mAP | n/a |" in md and "| rank_distance | n/a |" in md


def test_parallel_benchmark_with_misaligned_ids_stops_before_encoding(tmp_path, tiny_st_model,
                                                                       monkeypatch):
    data = formats.write_lareqa(tmp_path / "x", drop={"de": ["0-1", "2-2"], "xx": ["1-0"]})
    calls = _spy(monkeypatch)
    with pytest.raises(EvalDataError) as err:
        evaluate(_config(tmp_path, "xquad-r", data, tiny_st_model))
    assert str(err.value) == (
        f"{data}: question ids do not align across languages ['de', 'en', 'xx']: de lacks 2 of 9 "
        f"(e.g. ['0-1', '2-2']); xx lacks 1 of 9 (e.g. ['1-0']). This benchmark is parallel "
        f"(every question in every language); use benchmark=mlqa-r for partially parallel files")
    assert calls == []
    # The generic LAReQA form follows the same rule; a subset of aligned languages runs.
    with pytest.raises(EvalDataError, match="question ids do not align"):
        evaluate(_config(tmp_path, "lareqa", data, tiny_st_model))
    results = evaluate(_config(tmp_path, "lareqa", formats.write_lareqa(tmp_path / "y"),
                               tiny_st_model, plots="false"))
    assert all(s["queries"] == 9 for s in results["settings"].values())
