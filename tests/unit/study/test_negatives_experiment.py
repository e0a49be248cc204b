"""The random-vs-mined negatives experiment: arms wired as documented (hybrid batches, same total
budget, the mined arm continuing from its first pass), mean ± std over seeds; and the demo's
negative-quality measure on the generator's planted negatives and on random ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from megatron_hybridir.demo import mining
from megatron_hybridir.demo.data import make_demo_data
from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.study import experiment
from megatron_hybridir.study.experiment import METRICS


def test_arms_budget_seeds_and_summary(tmp_path, monkeypatch):
    calls = []
    data = DemoData(root=tmp_path / "data", tokenizer=tmp_path / "tok",
                    indexed=tmp_path / "data" / "indexed", vocab_size=10, languages=("xa",))

    def fake_train(run_dir, arm_data, overrides):
        calls.append((Path(run_dir).name, arm_data.indexed, list(overrides)))

    def fake_eval(run_dir, arm_data):
        seed = int(Path(run_dir).name[-1])
        value = (0.5 if "mined" in str(run_dir) else 0.4) + seed / 100
        (Path(run_dir) / "eval").mkdir(parents=True)
        (Path(run_dir) / "eval" / "results.json").write_text(json.dumps(
            {"metrics": {m: value for m in METRICS}}))

    def fake_first_pass(run_dir, arm_data, overrides, *, steps, seed):
        calls.append(("first_pass", steps, list(overrides)))
        return dataclasses.replace(arm_data, indexed=f"mined{seed}", init_from=run_dir)

    monkeypatch.setattr(experiment, "prepare_data", lambda root: data)
    monkeypatch.setattr(experiment, "train", fake_train)
    monkeypatch.setattr(experiment, "export_and_evaluate", fake_eval)
    monkeypatch.setattr(experiment, "first_pass_and_mine", fake_first_pass)
    monkeypatch.setattr(mining, "random_negative_data", lambda d, seed: dataclasses.replace(
        d, indexed=tmp_path / "data" / f"random{seed}" / "x"))
    monkeypatch.setattr(mining, "negative_quality", lambda path, languages: {
        "xa": {"names_entity": 0.0, "names_relation": 0.9 if "mined" in str(path) else 0.2,
               "contains_answer": 0.0}})
    summary = experiment.run_negatives_experiment(tmp_path, seeds=(1, 2, 3), steps=300,
                                                  first_steps=100)
    random_runs = [c for c in calls if c[0].startswith("random")]
    mined_runs = [c for c in calls if c[0].startswith("mined")]
    first = [c for c in calls if c[0] == "first_pass"]
    assert len(random_runs) == len(mined_runs) == len(first) == 3
    for seed, (r, m, f) in enumerate(zip(random_runs, mined_runs, first), start=1):
        assert "data.alpha=0.5" in r[2] and f"seed={seed}" in r[2]
        assert "training.train_steps=300" in r[2] and "training.train_steps=200" in m[2]
        assert f[1] == 100 and f"seed={seed}" in f[2]
        assert m[1] == f"mined{seed}" and any(o.startswith("checkpoint.init_from=") for o in m[2])
    mean, std = summary["mined negatives"]["mono_mAP"]
    assert mean == pytest.approx(0.52) and std == pytest.approx(np.std([0.51, 0.52, 0.53]))
    text = (tmp_path / "experiment_negatives.md").read_text()
    assert "| mined negatives | 0.520 ± 0.008 |" in text
    assert "mined negatives 0.00 / 0.90 / 0.000" in text
    with pytest.raises(ValueError, match="first_steps must lie in"):
        experiment.run_negatives_experiment(tmp_path, steps=100, first_steps=100)


@pytest.mark.slow
def test_negative_quality_on_planted_and_random_negatives(tmp_path, monkeypatch):
    make_demo_data(tmp_path, seed=0)
    planted = mining.negative_quality(tmp_path / "train.jsonl")
    assert set(planted) == {"xa", "xb", "xc", "ya", "yb", "za"}
    assert all(v["names_entity"] == 1.0 and v["names_relation"] == 0.0 and
               v["contains_answer"] == 0.0 for v in planted.values())
    data = DemoData(root=tmp_path, tokenizer=tmp_path / "tok", indexed=tmp_path / "indexed",
                    vocab_size=10, languages=tuple(planted))
    monkeypatch.setattr(mining, "_preprocess",
                        lambda d, source, output: dataclasses.replace(d, indexed=output))
    mining.random_negative_data(data, seed=0)
    rand = mining.negative_quality(tmp_path / "train.random0.jsonl")
    # A random passage names the entity only when it happens to carry one of its facts.
    assert all(v["names_entity"] < 0.1 and 0.1 < v["names_relation"] < 0.4 for v in rand.values())
