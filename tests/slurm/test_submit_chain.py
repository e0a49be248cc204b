"""The study plan's submit mechanics (``study/slurm.submit_script``) on a real controller: a job
array, one job per array task with ``--dependency=afterok:<array>_<task>``, a final job with
``afterok`` on all of those (job ids joined by ``:``), and ``afterok`` on a failed job never
starting. The jobs are tiny shell commands that record when they ran."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

TASKS = 3

# Each job records "<name> <start ns> <end ns>"; ``--wrap`` scripts keep the test self-contained.
RECORD = 'start=$(date +%s%N); sleep 1; echo "{name} $start $(date +%s%N)" >> {out}/times'


def _times(out: Path) -> dict[str, tuple[int, int]]:
    rows = [line.split() for line in (out / "times").read_text().splitlines()]
    assert len(rows) == len({r[0] for r in rows}), rows       # every job ran exactly once
    return {name: (int(a), int(b)) for name, a, b in rows}


def test_array_then_afterok_chain_runs_in_order(slurm_cluster, tmp_path):
    out = tmp_path
    common = ("--ntasks=1", "--cpus-per-task=1", f"--output={out}/%x-%j.out")
    array = slurm_cluster.sbatch(
        *common, "--job-name=array", f"--array=0-{TASKS - 1}",
        "--wrap", RECORD.format(name="array_$SLURM_ARRAY_TASK_ID", out=out))
    evals = [slurm_cluster.sbatch(*common, f"--job-name=eval{i}",
                                  f"--dependency=afterok:{array}_{i}",
                                  "--wrap", RECORD.format(name=f"eval_{i}", out=out))
             for i in range(TASKS)]
    report = slurm_cluster.sbatch(*common, "--job-name=report",
                                  f"--dependency=afterok:{':'.join(evals)}",
                                  "--wrap", RECORD.format(name="report", out=out))
    for job in (array, *evals, report):
        assert {r["JobState"] for r in slurm_cluster.wait(job, timeout=300)} == {"COMPLETED"}

    times = _times(out)
    assert sorted(times) == sorted([f"array_{i}" for i in range(TASKS)]
                                   + [f"eval_{i}" for i in range(TASKS)] + ["report"])
    for i in range(TASKS):
        assert times[f"array_{i}"][1] <= times[f"eval_{i}"][0], (i, times)
    assert max(times[f"eval_{i}"][1] for i in range(TASKS)) <= times["report"][0], times


def test_afterok_on_a_failed_job_never_starts(slurm_cluster, tmp_path):
    common = ("--ntasks=1", "--cpus-per-task=1", f"--output={tmp_path}/%x-%j.out")
    failed = slurm_cluster.sbatch(*common, "--job-name=fails", "--wrap", "exit 3")
    after = slurm_cluster.sbatch(*common, "--job-name=never", f"--dependency=afterok:{failed}",
                                 "--wrap", f"touch {tmp_path}/ran")
    [record] = slurm_cluster.wait(failed, timeout=300)
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "3:0", record
    # The dependent job stays pending with its dependency unsatisfiable, or is cancelled
    # (clusters with kill_invalid_depend); it never runs.
    [dependent] = slurm_cluster.wait(
        after, timeout=120, done=("CANCELLED", "PENDING", "COMPLETED", "FAILED"))
    if dependent["JobState"] == "PENDING":
        deadline = time.monotonic() + 60
        while dependent["Reason"] != "DependencyNeverSatisfied" and time.monotonic() < deadline:
            time.sleep(0.5)
            [dependent] = slurm_cluster.jobs(after)
        assert dependent["Reason"] == "DependencyNeverSatisfied", dependent
        slurm_cluster.run("scancel", after)
    else:
        assert dependent["JobState"] == "CANCELLED", dependent
    assert not (tmp_path / "ran").exists()
