"""The README's main job, shortened: TP=2 over two gloo ranks trains and learns, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

from megatron_hybridir.config import load_config
from megatron_hybridir.training.smoke import run_smoke
from tests.distributed.harness import run_ranks

OVERRIDES = ["model.preset=tiny", "seq_length=16", "loss.temperature=0.05",
             "parallel.tensor_model_parallel_size=2"]


def _train(launch, out: str, tag: str) -> None:
    result = run_smoke(load_config(None, OVERRIDES), steps=40)
    Path(out, f"{tag}_rank{launch.rank}.json").write_text(
        json.dumps({"losses": result.losses, "accuracies": result.accuracies}))


def test_tp2_smoke_training_learns_and_is_deterministic(tmp_path):
    run_ranks(_train, 2, str(tmp_path), "a")
    run_ranks(_train, 2, str(tmp_path), "b")
    a0 = json.loads((tmp_path / "a_rank0.json").read_text())
    a1 = json.loads((tmp_path / "a_rank1.json").read_text())
    b0 = json.loads((tmp_path / "b_rank0.json").read_text())
    losses = a0["losses"]
    assert len(losses) == 40
    assert a0 == a1  # both TP ranks see the same loss
    assert a0 == b0  # same seed, same losses on CPU
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
