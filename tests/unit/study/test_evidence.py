"""Issue 28's comparisons (``study/evidence.py``): the arms differ only in what each compares, the
runs are wired as documented (teacher longer, students on its scored data; merge of alpha=1 and
alpha=0 of the same seed), and the tables compute from given per-query scores (fixtures, no
training). The demo generator's second source leaves the default output byte-identical."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from megatron_hybridir.config import load_config
from megatron_hybridir.demo.data import DemoSizes, make_demo_data
from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.demo.languages import build_languages
from megatron_hybridir.demo.pipeline import DEMO_CONFIG, prepare_data
from megatron_hybridir.study import evidence
from megatron_hybridir.study.stats import holm, paired_bootstrap_diff

SMALL = DemoSizes(train_entities=20, dev_entities=4, test_entities=6)


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_demo_output_byte_identical(tmp_path):
    # The hash of the whole default corpus as the generator wrote it before the second source
    # existed (main at bdf0faf): the README's quickstart numbers rest on exactly these bytes.
    make_demo_data(tmp_path)
    assert _tree_hash(tmp_path) == "bb188ce4b842d4bdde4cec212e5e7108fe1b173676afe37c39d9df9c87320cab"


def test_second_source_own_style_and_first_source_unchanged(tmp_path):
    make_demo_data(tmp_path / "plain", sizes=SMALL)
    make_demo_data(tmp_path / "two", sizes=SMALL, second_source_entities=5)
    plain, two = tmp_path / "plain", tmp_path / "two"
    for name in ("train.jsonl", "test/lareqa/xa.json", "test/beir/za/corpus.jsonl",
                 "dev/lareqa/yb.json"):
        assert (two / name).read_bytes() == (plain / name).read_bytes()
    assert not (plain / "train.second.jsonl").exists()
    first = [json.loads(line) for line in (two / "train.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (two / "train.second.jsonl").read_text().splitlines()]
    assert len(second) == 5 * SMALL.facts_per_entity
    summary = json.loads((two / "summary.json").read_text())
    assert summary["sources"] == {"train.jsonl": len(first), "train.second.jsonl": len(second)}
    assert summary["second_source_entities"] == 5
    first_entities = {r["id"].rsplit("-", 1)[0] for r in first}
    assert not first_entities & {r["id"].rsplit("-", 1)[0] for r in second}
    langs = build_languages(0)
    for record in second:
        entity, relation = record["id"].rsplit("-", 1)
        for code, lang in langs.items():
            assert record["query"][code] == lang.ask_terse(entity, relation)
            assert record["query"][code] != lang.ask(entity, relation)
            assert set(record) == {"id", "query", "positive", "negatives"}
    # Its text trains the tokenizer too (after the first source's, which stays the same).
    assert (two / "tokenizer_text.txt").read_text().startswith((plain / "tokenizer_text.txt").read_text())
    assert second[0]["query"]["xa"] in (two / "tokenizer_text.txt").read_text()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_second_source_rejects_bad_count(tmp_path, bad):
    with pytest.raises(ValueError, match="second_source_entities must be an integer >= 0"):
        make_demo_data(tmp_path, sizes=SMALL, second_source_entities=bad)


def test_prepare_data_refuses_reused_data_of_another_kind(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"seed": 0, "languages": {}}))
    with pytest.raises(ValueError, match="generated with 0 second-source entities, but 300 were asked"):
        prepare_data(tmp_path, second_source_entities=300)


def _differences(arms: dict[str, list[str]]) -> dict[str, set[str]]:
    sets = {name: set(o) for name, o in arms.items()}
    common = set.intersection(*sets.values())
    return {name: s - common for name, s in sets.items()}


def _resolve(overrides):
    return load_config(DEMO_CONFIG, ["model.vocab_size=1000", "data.path=/nonexistent", *overrides])


def test_arms_differ_only_in_what_they_compare():
    distill = evidence.distillation_arms(2, 100, 0.5)
    diff = _differences(distill)
    assert diff["no distillation"] == {"loss.distillation.weight=0"}
    assert diff["distillation (KL, weight 0.5)"] == {*evidence.DISTILLATION, "loss.distillation.weight=0.5"}
    on = _resolve(distill["distillation (KL, weight 0.5)"])
    off = _resolve(distill["no distillation"])
    assert (on.loss.distillation.weight, off.loss.distillation.weight) == (0.5, 0.0)
    assert on.loss.distillation.teacher_temperature == on.loss.temperature == 0.05
    assert (on.seed, on.training.train_steps, on.data.alpha) == (2, 100, 0.5)
    assert _resolve(evidence.teacher_overrides(300)).training.train_steps == 300

    sources = evidence.sources_arms(3, 100)
    assert _differences(sources) == {"mixed batches": {"data.same_source_batches=false"},
                                     "same-source batches": {"data.same_source_batches=true"}}
    assert _resolve(sources["same-source batches"]).data.same_source_batches is True

    merge = evidence.merge_arms(1, 100)
    assert {n: _resolve(o).data.alpha for n, o in merge.items()} == {
        "alpha=1": 1.0, "alpha=0": 0.0, "hybrid (alpha=0.5)": 0.5}
    assert {_resolve(o).seed for o in merge.values()} == {1}


def _scores(rng, queries, offset=0.0):
    return {m: {q: float(rng.random() + offset) for q in queries} for m in ("mono_mAP", "cross_mAP")}


def test_contrast_table_from_fixtures():
    rng = np.random.default_rng(0)
    queries = [f"xa:q{k}" for k in range(40)]
    base = [_scores(rng, queries) for _ in range(3)]
    better = [{m: {q: v + 0.1 + 0.01 * s for q, v in run[m].items()} for m in run}
              for s, run in enumerate(base)]
    # a query only one arm scored is left out of the contrast
    better[1]["mono_mAP"]["xa:extra"] = 5.0
    arms = {"B": base, "A": better}
    result, lines = evidence.contrast_table(arms, [("A", "B")], metrics=("mono_mAP", "cross_mAP"),
                                            draws=2000)
    rows = result["contrasts"]
    assert [r["metric"] for r in rows] == ["mono_mAP", "cross_mAP"]
    for k, row in enumerate(rows):
        assert row["diff"] == pytest.approx(0.11)
        assert row["per_seed"] == pytest.approx([0.10, 0.11, 0.12])
        assert row["queries"] == 40 and row["seeds"] == 3 and row["seeds_agree"]
        metric = row["metric"]
        reference = paired_bootstrap_diff(
            np.array([[a[metric][q] - b[metric][q] for q in queries] for a, b in zip(better, base)]),
            draws=2000, seed=k)
        assert row["p"] == reference.p_value
        assert row["ci"] == pytest.approx([reference.ci_low, reference.ci_high], abs=1e-12)
    assert [r["p_holm"] for r in rows] == holm([r["p"] for r in rows])
    mono_means = [np.mean(list(run["mono_mAP"].values())) for run in better]
    assert result["summary"]["A"]["mono_mAP"] == pytest.approx((np.mean(mono_means), np.std(mono_means)))
    assert lines[0] == "| arm | mono_mAP | cross_mAP |"
    assert any(line.startswith("| A - B | mono_mAP | +0.110 |") for line in lines)


def test_contrast_table_no_difference_is_not_significant():
    rng = np.random.default_rng(1)
    queries = [f"yb:q{k}" for k in range(60)]
    same = [_scores(rng, queries) for _ in range(3)]
    result, _ = evidence.contrast_table({"x": same, "y": same}, [("x", "y")],
                                        metrics=("mono_mAP",), draws=1000)
    assert result["contrasts"][0]["diff"] == 0.0 and result["contrasts"][0]["p_holm"] == 1.0


def test_contrast_table_refuses_unpaired_input():
    run = {"mono_mAP": {"xa:q": 0.5}}
    with pytest.raises(ValueError, match="same number"):
        evidence.contrast_table({"a": [run, run], "b": [run]}, [("a", "b")], metrics=("mono_mAP",))
    with pytest.raises(ValueError, match="names 'c', which is not an arm"):
        evidence.contrast_table({"a": [run], "b": [run]}, [("a", "c")], metrics=("mono_mAP",))


def test_train_arm_refuses_a_run_past_the_budget(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("300\n")
    with pytest.raises(ValueError, match="latest checkpoint is step 300, past the 100"):
        evidence.train_arm(tmp_path, {}, [], 100)
    evidence.train_arm(tmp_path, {}, [], 300)       # finished: nothing to do, no training


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """pipeline.train / score_run / mining / merge recorded instead of run."""
    from megatron_hybridir.convert import merge
    from megatron_hybridir.demo import mining, pipeline

    calls = {"train": [], "mine": [], "merge": [], "scored": []}
    data = DemoData(root=tmp_path / "data", tokenizer=tmp_path / "tok",
                    indexed=tmp_path / "data" / "indexed", vocab_size=10, languages=("xa",))
    monkeypatch.setattr(pipeline, "prepare_data", lambda root, **kw: data)

    def train(run_dir, arm_data, overrides):
        calls["train"].append((run_dir.name, str(arm_data.indexed), list(overrides)))

    def score(run_dir, arm_data, checkpoint=None):
        calls["scored"].append((run_dir.name, str(arm_data.indexed), checkpoint and checkpoint.name))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"source_batches": {"/d/train.jsonl": 3, "/d/train.second.jsonl": 2}}) + "\n")
        value = 0.5 + 0.1 * ("distill" in run_dir.name or "same" in run_dir.name or "merged" in run_dir.name)
        return {m: {"xa:q1": value, "xa:q2": value / 2} for m in evidence.METRICS}

    def mined(arm_data, model_dir, folder, teacher=None):
        calls["mine"].append((Path(model_dir).parent.name, teacher))
        return dataclasses.replace(arm_data, indexed=folder / "indexed")

    monkeypatch.setattr(pipeline, "train", train)
    monkeypatch.setattr(evidence, "score_run", score)
    monkeypatch.setattr(mining, "mined_data", mined)
    monkeypatch.setattr(merge, "merge_checkpoints", lambda paths, out, **kw: calls["merge"].append(
        ([Path(p).name for p in paths], Path(out).parent.name, kw)))
    return calls


def test_distillation_experiment_wiring(tmp_path, fake_runs):
    result = evidence.run_distillation_experiment(tmp_path, seeds=(1, 2), steps=10, weight=0.3,
                                                  draws=200)
    names = [c[0] for c in fake_runs["train"]]
    assert names == ["teacher", "plain_seed1", "distill_seed1", "plain_seed2", "distill_seed2"]
    teacher = fake_runs["train"][0][2]
    assert "training.train_steps=30" in teacher and f"seed={evidence.TEACHER_SEED}" in teacher
    assert fake_runs["mine"] == [("teacher", "bi-encoder")]
    mined = str(tmp_path / "mined" / "indexed")
    for name, indexed, overrides in fake_runs["train"][1:]:
        assert indexed == mined and "training.train_steps=10" in overrides
        assert ("loss.distillation.weight=0.3" in overrides) == name.startswith("distill")
    assert result["contrasts"][0]["contrast"] == "distillation (KL, weight 0.3) - no distillation"
    # its row in the arms' table, and one contrast row per metric
    text = (tmp_path / "experiment_distillation.md").read_text()
    assert text.count("| distillation (KL") == 1 + len(evidence.METRICS)


def test_sources_experiment_wiring(tmp_path, fake_runs):
    evidence.run_sources_experiment(tmp_path, seeds=(4,), steps=10, second_source_entities=7, draws=200)
    assert [(c[0], c[2][-1]) for c in fake_runs["train"]] == [
        ("mixed_seed4", "data.same_source_batches=false"), ("same_source_seed4", "data.same_source_batches=true")]
    text = (tmp_path / "experiment_sources.md").read_text()
    assert "7 entities" in text
    assert "same_source_seed4: train.jsonl 3, train.second.jsonl 2" in text


def test_merge_experiment_wiring(tmp_path, fake_runs):
    result = evidence.run_merge_experiment(tmp_path, seeds=(1, 2), steps=10, draws=200)
    assert [c[0] for c in fake_runs["train"]] == [
        "alpha1_seed1", "alpha0_seed1", "alpha0.5_seed1", "alpha1_seed2", "alpha0_seed2", "alpha0.5_seed2"]
    assert fake_runs["merge"] == [
        (["alpha1_seed1", "alpha0_seed1"], "merged_seed1", {"method": "linear", "weights": [0.5, 0.5],
                                                            "overwrite": True}),
        (["alpha1_seed2", "alpha0_seed2"], "merged_seed2", {"method": "linear", "weights": [0.5, 0.5],
                                                            "overwrite": True})]
    assert ("merged_seed2", str(tmp_path / "data" / "indexed"), "checkpoint") in fake_runs["scored"]
    assert result["contrasts"][0]["contrast"] == f"{evidence.MERGED} - hybrid (alpha=0.5)"
    assert result["contrasts"][0]["diff"] == pytest.approx(0.1 * 0.75)
