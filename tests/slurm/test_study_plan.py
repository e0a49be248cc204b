"""The whole ``tools/run_study.py --plan slurm`` output run for real on the local cluster, at tiny
size: 2 sizes (tiny Mistral and Qwen3 checkpoints written by ``transformers``) x 2 alphas x 2 seeds,
from the training sources and evaluation benchmarks in their public layouts
(tests/slurm/study_fixtures.py). ``submit.sh`` goes through the real ``sbatch``; every job
(data, import, preprocessing, training array, export + evaluation per cell, report) must complete,
start only after the jobs it depends on ended, and the report must carry confidence intervals and
Holm-adjusted p-values."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.slurm.conftest import ROOT
from tests.slurm.study_fixtures import SIZES, plan_argv, write_inputs

pytestmark = pytest.mark.slurm

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def _key(record: dict) -> str:
    """A record's id as jobs.tsv and dependencies name it (array task: ``<array>_<task>``)."""
    if record.get("ArrayTaskId", "N/A") not in ("N/A", ""):
        return f"{record['ArrayJobId']}_{record['ArrayTaskId']}"
    return record["JobId"]


def _wait_all(cluster, ids: list[str], timeout: float) -> dict[str, dict]:
    """Poll every job until each record is final; records are kept as they finish (the controller
    forgets finished jobs after MinJobAge)."""
    final: dict[str, dict] = {}
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        for job in sorted(pending):
            records = cluster.jobs(job)
            for r in records:
                if r["JobState"] in FINAL:
                    final[_key(r)] = r
            if records and all(r["JobState"] in FINAL for r in records):
                pending.discard(job)
            elif any(r["JobState"] == "PENDING" and r.get("Reason") == "DependencyNeverSatisfied"
                      for r in records):
                raise AssertionError(f"job {job} can never start: {records}; finished: "
                                     f"{ {k: v['JobState'] for k, v in final.items()} }")
        assert time.monotonic() < deadline, f"jobs {sorted(pending)} unfinished after {timeout} s"
        time.sleep(2)
    return final


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_whole_plan_runs_in_dependency_order_and_reports(slurm_cluster, tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "study"
    run = dict(env=slurm_cluster.env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    done = subprocess.run([sys.executable, "tools/run_study.py", *plan_argv(inputs, out)], **run)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(["bash", str(out / "submit.sh")], **run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 8 evaluations" in done.stdout, done.stdout

    rows = [line.split("\t") for line in (out / "jobs.tsv").read_text().splitlines()]
    names = {name: job for name, job, _ in rows}
    assert len(rows) == 1 + 3 * len(SIZES) + 8 + 1 == len(names), rows
    records = _wait_all(slurm_cluster, [job for _, job, _ in rows], timeout=720)
    logs = sorted(p.name for p in (out / "logs").iterdir())
    states = {k: r["JobState"] for k, r in records.items()}
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    assert len(records) == len(rows) - len(SIZES) + 4 * len(SIZES)      # arrays: 4 tasks each

    for key, r in sorted(records.items(), key=lambda kv: kv[1]["StartTime"]):   # the walk's timings
        print(f"{r['JobName']:<24} {key:>6} {r['StartTime']} -> {r['EndTime']} {r['RunTime']}")

    # Every edge of the graph, as submitted: the dependent job started after its parent ended.
    def ended(key):
        return _time(records[key]["EndTime"])

    for name, job, after in rows:
        starts = [r for k, r in records.items() if k == job or k.startswith(f"{job}_")]
        for parent in ([] if after == "-" else after.split(":")):
            parents = [parent] if parent in records else [k for k in records if k.startswith(f"{parent}_")]
            assert parents, (name, parent)
            for p in parents:
                for r in starts:
                    assert _time(r["StartTime"]) >= ended(p), (name, p, r["StartTime"], ended(p))
    # The graph is the pipeline's: prep after data; training after import and prep; each cell's
    # evaluation after its own array task; the report after every evaluation.
    edges = {name: after for name, _, after in rows}
    for size in SIZES:
        assert edges[f"prep_{size}"] == names["data"] and edges[f"import_{size}"] == "-"
        assert edges[f"train_{size}"] == f"{names[f'import_{size}']}:{names[f'prep_{size}']}"
    evals = [n for n in names if n.startswith("eval_")]
    assert sorted(edges["report"].split(":")) == sorted(names[n] for n in evals)

    # The data job printed the leakage check: the MIRACL evaluation topic in the training rows.
    data_log = (out / "logs" / f"study-data-{names['data']}.out").read_text()
    assert "leakage vs miracl:miracl (4 evaluation queries): 1 item(s) matched" in data_log

    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == [] and len(report["cells"]) == 8
    assert {c["train_steps"] for c in report["cells"]} == {3}
    comparisons = report["comparisons"]
    assert comparisons and len({c["metric"] for c in comparisons}) > 1
    kinds = {c["kind"] for c in comparisons}
    assert len(kinds) >= 2, kinds                  # hybrid vs alpha=1 per size, and size vs size
    for c in comparisons:
        assert 0.0 <= c["p_value"] <= 1.0 and c["p_value"] <= c["p_holm"] <= 1.0, c
        assert c["ci_low"] <= c["mean_diff"] <= c["ci_high"], c
    for m in report["means"]:
        assert m["ci_low"] <= m["mean"] <= m["ci_high"] and m["seeds"] == 2, m
    text = (out / "report.md").read_text()
    assert "p (Holm)" in text and "95% CI" in text and "missing evaluations: none" in text
    print((out / "report.md").read_text())
