"""The 7B sbatch script at tiny size on a real Slurm controller: 2 ranks through ``srun`` on gloo,
``scancel --signal=USR1`` mid-run (what ``#SBATCH --signal=USR1@600`` sends before the time
limit), the trainer saves and leaves the requeue marker, ``slurm/launch.sh`` requeues the job with
``scontrol requeue``, the same job id resumes, and its losses equal an uninterrupted run's bit for
bit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

STEPS = 30
SIGNAL_AFTER = 4      # steps logged before the signal is sent
# slurm/train_7b.sh as written, resized for one CPU node: its own #SBATCH lines ask for 8 GPUs
# and 16 CPUs per task; options on the command line take precedence over them.
RESIZE = ("--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1")
OVERRIDES = ("parallel.tensor_model_parallel_size=1", f"training.train_steps={STEPS}",
             "training.log_interval=1")


def _submit(cluster, run_dir: Path, logs: Path) -> str:
    return cluster.sbatch(*RESIZE, f"--output={logs}/%x-%j.out", "slurm/train_7b.sh", *OVERRIDES,
                          env={"CONFIG": "examples/tiny_cpu.yaml", "RUN_DIR": str(run_dir)})


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_preempted_job_requeues_itself_and_matches_an_uninterrupted_run(slurm_cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    reference = _submit(slurm_cluster, tmp_path / "reference", logs)
    [ref_job] = slurm_cluster.wait(reference)
    assert ref_job["JobState"] == "COMPLETED" and ref_job["Restarts"] == "0", ref_job

    run_dir = tmp_path / "preempted"
    job = _submit(slurm_cluster, run_dir, logs)
    deadline = time.monotonic() + 600
    while len(_records(run_dir)) < SIGNAL_AFTER:
        assert time.monotonic() < deadline, "no training progress within 600 s"
        assert slurm_cluster.jobs(job)[0]["JobState"] in ("PENDING", "RUNNING"), slurm_cluster.jobs(job)
        time.sleep(0.2)
    slurm_cluster.run("scancel", "--signal=USR1", job)
    [record] = slurm_cluster.wait(job, timeout=900)
    log = (logs / f"hybridir-7b-{job}.out").read_text()
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", (record, log)

    # Two launches of the same job: the second resumed from the step the signal saved.
    launches = sorted((run_dir / "launches").glob("*.yaml"))
    assert len(launches) == 2, launches
    resumed_at = yaml.safe_load(launches[1].read_text())["start_step"]
    assert SIGNAL_AFTER <= resumed_at < STEPS
    assert f"saved step {resumed_at}, exiting for requeue" in log
    assert f"preempted: requeueing job {job} (restart 0) to resume from {resumed_at}" in log
    assert not (run_dir / "requeue").exists()

    ref, got = _records(tmp_path / "reference"), _records(run_dir)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in ref]          # bit for bit
    assert [r["grad_norm"] for r in got] == [r["grad_norm"] for r in ref]
    print(f"resumed at step {resumed_at}; last losses reference {[r['loss'] for r in ref[-3:]]}, "
          f"preempted {[r['loss'] for r in got[-3:]]}")
