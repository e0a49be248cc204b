"""Fault injection (issue 16): a two-process training run (TP=2 over gloo) is killed with SIGKILL at
seeded random points — after a random number of steps, or while a checkpoint is being written —
and relaunched, several times over. After every kill ``latest`` names a checkpoint whose checksums
verify, the relaunch resumes from exactly that step, and the finished run's loss sequence equals an
uninterrupted run's bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from megatron_hybridir.checkpointing.checksums import verify_checksums
from megatron_hybridir.runtime.distributed import free_port
from megatron_hybridir.training.checkpoint import latest_step

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10
KILLS = 4          # trials: each launch but the last is killed


def _launch(run_dir) -> list[subprocess.Popen]:
    overrides = ["model.preset=tiny", "seq_length=32", "loss.temperature=0.05",
                 "parallel.tensor_model_parallel_size=2", "training.gradcache=true",
                 "data.global_batch_size=8", "data.micro_batch_size=2",
                 f"training.train_steps={STEPS}", f"checkpoint.dir={run_dir}",
                 "checkpoint.save_interval=1", "checkpoint.keep_last=2", "training.log_interval=1"]
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
                   RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        log = open(Path(run_dir).parent / f"{Path(run_dir).name}.rank{rank}.log", "a")
        procs.append(subprocess.Popen([sys.executable, "-m", "megatron_hybridir.train", *overrides],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return procs


def _wait(procs, timeout=600) -> None:
    for proc in procs:
        assert proc.wait(timeout=timeout) == 0, f"rank exited with {proc.returncode}"


def _kill(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def _lines(run_dir) -> int:
    path = Path(run_dir) / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _kill_at_random_point(procs, run_dir, rng, start: int) -> str:
    """Kill after a random number of new steps plus a random delay, or while a save is in flight
    (a ``step_N.tmp`` folder exists), as the seeded generator decides."""
    ckpt = Path(run_dir) / "checkpoints"
    mid_save = bool(rng.integers(0, 2))
    target = start + 1 + int(rng.integers(0, 3))
    delay = float(rng.uniform(0, 0.02 if mid_save else 0.4))
    deadline = time.time() + 600
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if mid_save and any(p.name.endswith(".tmp") and int(p.name[5:13]) >= target
                            for p in ckpt.glob("step_*.tmp")):
            break
        if not mid_save and _lines(run_dir) >= target:
            break
        time.sleep(0.003)
    time.sleep(delay)
    alive = [p.poll() is None for p in procs]
    _kill(procs)
    log = (Path(run_dir).parent / f"{Path(run_dir).name}.rank0.log").read_text()[-3000:]
    # Both ranks must die by the kill, not by something else that went wrong first.
    assert all(alive) or [p.returncode for p in procs] == [-signal.SIGKILL] * 2, log
    return f"{'mid-save' if mid_save else 'after-step'} target {target} +{delay:.3f}s"


def test_sigkill_at_random_points_always_resumes_exactly(tmp_path):
    reference = tmp_path / "reference"
    _wait(_launch(reference))
    expected = _losses(reference)
    assert len(expected) == STEPS

    rng = np.random.default_rng(16)
    run = tmp_path / "run"
    trials, resumed_from = [], []
    for _ in range(KILLS):
        start = latest_step(run) or 0 if (run / "checkpoints").exists() else 0
        how = _kill_at_random_point(_launch(run), run, rng, start)
        step = latest_step(run) if (run / "checkpoints" / "latest").exists() else None
        if step is not None:
            verify_checksums(run / "checkpoints" / f"step_{step:08d}")   # never a partial one
        trials.append((how, step))
        resumed_from.append(step)
    print("fault-injection trials (how, latest after the kill):", trials)
    _wait(_launch(run))
    log = (tmp_path / "run.rank0.log").read_text()
    for step in resumed_from:
        if step:
            assert f"resumed from {run / 'checkpoints' / f'step_{step:08d}'}" in log, trials
    assert _losses(run) == expected, trials
    # Kills landed in different places: at least one mid-save and at least one after a step.
    assert {how.split()[0] for how, _ in trials} == {"mid-save", "after-step"}, trials
