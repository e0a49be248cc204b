"""The Slurm study's report over per-query tables: planted effects found with the CPU study's
statistics, Holm over the whole report, missing cells named, foreign or mismatched cells refused."""

import json
import shutil

import numpy as np
import pytest

from megatron_hybridir.study.cluster_report import write_cluster_report
from megatron_hybridir.study.cluster_tables import StudyDataError
from megatron_hybridir.study.slurm import PlanConfig, write_plan
from megatron_hybridir.study.stats import holm

SIZES, ALPHAS, SEEDS = ["7b", "14b"], [0.0, 0.5, 1.0], [1, 2, 3]


def _rows(setting, metric, values):
    return [{"setting": setting, "query": q, "metric": metric, "value": v} for q, v in values.items()]


def _write(folder, results, rows, info):
    folder.mkdir(parents=True)
    results["run_info"] = info
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "per_query.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _cell(out, study_id, size, alpha, seed, rng):
    run = out / "runs" / f"{size}_a{alpha:g}_s{seed}"
    info = {"study": study_id, "alpha": alpha, "seed": seed, "train_steps": 3, "parameters": 1}
    # BEIR nDCG@10 grows with alpha (+0.2 from 0 to 1); pool mAP falls with alpha at 7b only.
    ndcg = {f"q{i}": float(np.clip(0.4 + 0.2 * alpha + rng.normal(0, 0.05), 0, 1)) for i in range(40)}
    _write(run / "eval" / "beir-scifact", {"benchmark": "beir", "metrics": {"nDCG@10": np.mean(list(ndcg.values()))}},
           _rows("all", "nDCG@10", ndcg), info)
    hits = {f"{i}": float(rng.random() < 0.6) for i in range(30)}
    _write(run / "eval" / "nq", {"benchmark": "nq", "metrics": {"top20": np.mean(list(hits.values()))}},
           _rows("all", "top20", hits), info)
    per_lang, rows = {}, []
    for lang in ("sw", "yo"):
        v = {f"{i}": float(rng.random()) for i in range(10)}
        per_lang[lang] = {"nDCG@10": float(np.mean(list(v.values())))}
        rows += _rows(lang, "nDCG@10", v)
    _write(run / "eval" / "miracl", {"benchmark": "miracl", "metrics": {}, "per_language": per_lang}, rows, info)
    langs, settings, rows, pool = ["de", "en"], {}, [], []
    for a in langs:
        for b in langs:
            ap = {f"p{i}": float(rng.random()) for i in range(12)}
            settings[f"{a}->{b}"] = {"mAP": float(np.mean(list(ap.values())))}
            rows += _rows(f"{a}->{b}", "AP", ap)
        shift = -0.3 * alpha if size == "7b" else 0.0
        ap = {f"p{i}": float(np.clip(0.6 + shift + rng.normal(0, 0.05), 0, 1)) for i in range(12)}
        pool.append(float(np.mean(list(ap.values()))))
        rows += _rows(f"pool:{a}", "AP", ap)
        rows += _rows(f"bias:{a}", "rank_distance", {f"p{i}": float(rng.integers(1, 9)) for i in range(12)})
    _write(run / "eval" / "xquad-r", {"benchmark": "xquad-r", "metrics": {}, "settings": settings,
                                      "matrix": {"languages": langs, "pool": pool}}, rows, info)


@pytest.fixture()
def study(tmp_path):
    out = tmp_path / "study"
    plan = write_plan(PlanConfig(out=str(out), sizes=SIZES, alphas=ALPHAS, seeds=SEEDS, beir=["scifact"],
                                 recipes={s: "examples/tiny_cpu.yaml" for s in SIZES}, train_steps=3,
                                 hf={s: f"/models/{s}" for s in SIZES}, data_sources=["dpr --source nq.json"]))
    plan["evaluations"] = ["beir-scifact", "nq", "miracl", "xquad-r"]       # no MLQA-R in the fixture
    (out / "plan.json").write_text(json.dumps(plan))
    rng = np.random.default_rng(0)
    for size in SIZES:
        for alpha in ALPHAS:
            for seed in SEEDS:
                _cell(out, plan["study_id"], size, alpha, seed, rng)
    return out, plan


def _find(report, label, metric):
    return next(c for c in report["comparisons"] if c["label"] == label and c["metric"] == metric)


@pytest.mark.slow
def test_planted_effects_are_found_with_holm_over_the_whole_report(study):
    out, plan = study
    report = write_cluster_report(out, draws=2000)
    c = _find(report, "7b: alpha=0.5 - alpha=1", "beir-scifact:nDCG@10")
    # The mean difference is that of the per-query tables on disk, paired by query and seed.
    def table(alpha):
        return np.array([[json.loads(line)["value"] for line in
                          (out / "runs" / f"7b_a{alpha:g}_s{s}" / "eval" / "beir-scifact" / "per_query.jsonl")
                          .read_text().splitlines()] for s in SEEDS])
    assert c["mean_diff"] == pytest.approx((table(0.5) - table(1.0)).mean(), abs=1e-12)
    assert c["significant"] and c["ci_high"] < 0
    assert _find(report, "7b: alpha=0.5 - alpha=1", "xquad-r:multi_mAP")["significant"]
    assert not _find(report, "14b: alpha=0.5 - alpha=1", "xquad-r:multi_mAP")["significant"]
    assert _find(report, "alpha=1: 14b - 7b", "xquad-r:multi_mAP")["significant"]
    p = [c["p_value"] for c in report["comparisons"]]
    assert [c["p_holm"] for c in report["comparisons"]] == pytest.approx(holm(p))
    metrics = {c["metric"] for c in report["comparisons"]}
    assert metrics == {"beir-scifact:nDCG@10", "nq:top20", "miracl:nDCG@10", "xquad-r:mono_mAP",
                       "xquad-r:cross_mAP", "xquad-r:multi_mAP", "xquad-r:rank_distance"}
    assert report["missing"] == []
    assert {c["rule"] for c in report["cells"]} == {"fixed"} and {c["train_steps"] for c in report["cells"]} == {3}
    text = (out / "report.md").read_text()
    assert "Rule: **fixed**" in text and "| 7b_a0.5_s2 | fixed | 3 | 3 |" in text
    assert (out / "report.png").stat().st_size > 0


def test_missing_evaluations_are_named_and_drop_only_their_seed(study):
    out, _ = study
    shutil.rmtree(out / "runs" / "14b_a1_s3" / "eval" / "nq")
    shutil.rmtree(out / "runs" / "7b_a0_s2")
    report = write_cluster_report(out, draws=200)
    assert report["missing"] == [f"7b_a0_s2: eval/{n}" for n in ("beir-scifact", "nq", "miracl", "xquad-r")] \
        + ["14b_a1_s3: eval/nq"]
    assert _find(report, "14b: alpha=0.5 - alpha=1", "nq:top20")["n_seeds"] == 2
    assert _find(report, "14b: alpha=0.5 - alpha=1", "xquad-r:mono_mAP")["n_seeds"] == 3
    assert "missing evaluations: 7b_a0_s2: eval/beir-scifact" in (out / "report.md").read_text()


def test_a_cell_from_another_study_is_refused(study):
    out, _ = study
    path = out / "runs" / "14b_a0.5_s1" / "eval" / "nq" / "results.json"
    data = json.loads(path.read_text())
    data["run_info"]["study"] = "0123456789abcdef"
    path.write_text(json.dumps(data))
    with pytest.raises(StudyDataError, match=r"14b_a0.5_s1/eval/nq/results.json: run_info.study is "
                                             r"'0123456789abcdef', this study is '[0-9a-f]{16}'"):
        write_cluster_report(out, draws=200)


def test_mismatched_query_sets_and_stale_tables_are_refused(study):
    out, _ = study
    path = out / "runs" / "7b_a1_s2" / "eval" / "beir-scifact" / "per_query.jsonl"
    original = path.read_text()
    path.write_text(original.replace('"q0"', '"q99"'))           # same mean, another query
    with pytest.raises(StudyDataError, match=r"beir-scifact:nDCG@10: cell 7b_a1_s2 has 40 queries, cell "
                                             r"7b_a0_s1 40; 2 differ \(e.g. \['q0', 'q99'\]\)"):
        write_cluster_report(out, draws=200)
    rows = [json.loads(line) for line in original.splitlines()]
    rows[0]["value"] += 0.25                  # same queries, a value results.json did not average
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(StudyDataError, match=r"per_query.jsonl gives all nDCG@10 = .*, results.json says"):
        write_cluster_report(out, draws=200)


@pytest.mark.slow
def test_the_report_job_command_writes_the_report(study):
    import runpy
    from pathlib import Path

    out, plan = study
    tool = Path(__file__).resolve().parents[3] / "tools" / "run_study.py"
    main = runpy.run_path(str(tool), run_name="run_study")["main"]
    assert main(["--plan", "slurm", "--report-only", "--out", str(out), "--draws", "100"]) == 0
    assert json.loads((out / "report.json").read_text())["study_id"] == plan["study_id"]
    assert f"--plan slurm --report-only --out {out}" in (out / "report.sbatch").read_text()
