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


ENCODER = ["model.layer_kind=bert", "model.num_query_groups=null", "model.type_vocab_size=2",
           "model.position_offset=2", "model.max_position_embeddings=66", "model.pooling=first",
           "model.pooler=true", "model.hidden_dropout=0.1", "optim.lr=5.0e-4"]


def _train_encoder(launch, run_dir: str) -> None:
    train(load_config(ROOT / "examples" / "tiny_cpu.yaml",
                      ["training.train_steps=40", f"checkpoint.dir={run_dir}", *ENCODER]))


def test_tiny_post_ln_encoder_trains_with_tp2_and_gradcache(tmp_path):
    """The BERT-style encoder (LaBSE head, dropout on) through the same trainer: TP=2, GradCache."""
    run_ranks(_train_encoder, 2, str(tmp_path / "enc"))
    losses = _losses(tmp_path / "enc")
    assert len(losses) == 40
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
