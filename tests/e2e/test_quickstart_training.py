"""The README's main job, shortened: the tiny CPU recipe (TP=2 over two gloo ranks, hybrid
batches, GradCache) trains, learns, and gives the same losses when run twice."""

from __future__ import annotations

import json
from pathlib import Path

from megatron_hybridir.config import load_config
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks

ROOT = Path(__file__).resolve().parents[2]


def _train(launch, run_dir: str) -> None:
    train(load_config(ROOT / "examples" / "tiny_cpu.yaml",
                      ["training.train_steps=40", f"checkpoint.dir={run_dir}"]))


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_recipe_learns_and_is_deterministic(tmp_path):
    run_ranks(_train, 2, str(tmp_path / "a"))
    run_ranks(_train, 2, str(tmp_path / "b"))
    losses = _losses(tmp_path / "a")
    assert len(losses) == 40
    assert losses == _losses(tmp_path / "b")  # same seed, same losses on CPU
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
