"""Distillation in a training run: ``metrics.jsonl`` logs the (unweighted) distillation term of
every step when ``loss.distillation.weight`` > 0, and nothing when it is off."""

from __future__ import annotations

import json
import math

from megatron_hybridir.config import load_config
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks
from tests.e2e.test_same_source_training import _two_source_data


def _train_rank(launch, overrides: list[str]) -> None:
    train(load_config(None, overrides))


def test_the_distillation_term_is_logged_per_step(tmp_path, monkeypatch):
    import tests.unit.data.conftest as records_module

    real = records_module.make_records

    def with_scores(n=30):
        rows = real(n)
        for r in rows:
            r["teacher_scores"] = {lang: [1.0] + [0.1 * (i + 1) for i in range(len(r["negatives"]))]
                                   for lang in r["query"]}
        return rows

    monkeypatch.setattr(records_module, "make_records", with_scores)
    data, _ = _two_source_data(tmp_path)
    base = ["model.preset=tiny", "seq_length=32", f"data.path={data}", "data.global_batch_size=8",
            "data.micro_batch_size=4", "training.train_steps=2", "loss.num_hard_negatives=1"]
    run_ranks(_train_rank, 1, [*base, "loss.distillation.weight=0.5",
                               f"checkpoint.dir={tmp_path / 'on'}"])
    run_ranks(_train_rank, 1, [*base, f"checkpoint.dir={tmp_path / 'off'}"])
    on = [json.loads(x) for x in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    off = [json.loads(x) for x in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in on] == [1, 2]
    assert all(math.isfinite(r["distillation"]) and r["distillation"] > 0 for r in on), on
    assert all("distillation" not in r for r in off)
