"""A run directory under hostile conditions (issue 24): a second job on the same ``checkpoint.dir``
stops naming the first (and a SIGKILLed holder's lock is taken over by the relaunch); a full disk
during a save names the cause and the file, and partial saves are cleared by the next launch; a
crafted pickle in ``rng_rank0.pt`` or in the step's ``.metadata`` (checksums rewritten to match) is
refused without running."""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from megatron_hybridir.checkpointing.checksums import write_checksums
from megatron_hybridir.config import load_config
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks

ROOT = Path(__file__).resolve().parents[2]


def _overrides(run_dir, *extra):
    return ["model.preset=tiny", "seq_length=32", "loss.temperature=0.05",
            "data.global_batch_size=8", "data.micro_batch_size=2", "training.log_interval=1",
            f"checkpoint.dir={run_dir}", "checkpoint.save_interval=2", *extra]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE", "SLURM_JOB_ID"):
        env.pop(key, None)
    return env


def _cmd(run_dir, *extra):
    return [sys.executable, "-m", "megatron_hybridir.train", *_overrides(run_dir, *extra)]


def _steps(run_dir) -> list[int]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_second_training_on_the_same_run_dir_stops_and_a_killed_holder_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(_cmd(run_dir, "training.train_steps=100000"), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(_steps(run_dir)) < 3 and first.poll() is None:
            time.sleep(0.2)
        assert len(_steps(run_dir)) >= 3, "the first training did not start"
        second = subprocess.run(_cmd(run_dir, "training.train_steps=100000", "optim.lr=5e-4"),
                                cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        error = second.stderr[second.stderr.index("error: "):]
        assert "the run directory is in use by another training job" in error
        assert f"pid {first.pid}, started " in error
        assert sorted(p.name for p in (run_dir / "launches").iterdir()) == ["0001.yaml"]
    finally:
        os.killpg(first.pid, signal.SIGKILL)     # dies holding the lock
        first.wait()
    saved = int((run_dir / "checkpoints" / "latest").read_text())
    logged = _steps(run_dir)
    relaunch = subprocess.run(_cmd(run_dir, f"training.train_steps={saved + 2}"), cwd=ROOT,
                              env=_env(), capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    assert f"resumed from {run_dir / 'checkpoints' / f'step_{saved:08d}'}" in relaunch.stderr
    assert _steps(run_dir) == list(range(1, saved + 3))
    # The killed run's records past its checkpoint are kept aside, not lost.
    superseded = run_dir / "metrics.superseded.jsonl"
    assert [s for s in logged if s > saved] == (
        [json.loads(line)["step"] for line in superseded.read_text().splitlines()]
        if superseded.exists() else [])


def _train_with_a_full_disk(launch, overrides: list[str], errors: str) -> None:
    """Megatron's writer processes (forked from this rank) find the disk full at step 4."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from megatron_hybridir.training.checkpoint import CheckpointSaveError

    original = filesystem_async._write_item

    @functools.wraps(original)   # Megatron inspects its signature
    def write_item(*args, **kwargs):
        stream = next(a for a in args if hasattr(a, "write"))
        if "step_00000004.tmp" in str(getattr(stream, "name", "")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), stream.name)
        return original(*args, **kwargs)

    filesystem_async._write_item = write_item
    try:
        train(load_config(None, overrides))
    except CheckpointSaveError as err:
        Path(errors).write_text(str(err))


def _train_rank(launch, overrides: list[str]) -> None:
    train(load_config(None, overrides))


def test_a_full_disk_names_cause_and_file_and_the_relaunch_clears_partial_saves(tmp_path):
    run_dir, errors = tmp_path / "run", tmp_path / "error.txt"
    run_ranks(_train_with_a_full_disk, 1, _overrides(run_dir, "training.train_steps=4"),
              str(errors))
    message = errors.read_text()
    ckpt = run_dir / "checkpoints"
    assert message.startswith("saving checkpoint step 4 failed: no space left on device (ENOSPC) "
                              f"writing {ckpt / 'step_00000004.tmp'}/"), message
    assert f"{ckpt / 'latest'} still names the last complete checkpoint" in message
    assert (ckpt / "latest").read_text().strip() == "2"
    assert not (ckpt / "step_00000004.tmp").exists()
    # A save killed mid-way leaves its partial folder; the next holder of the run dir clears it.
    (ckpt / "step_00000003.tmp").mkdir()
    (ckpt / "step_00000003.tmp" / "__0_0.distcp").write_bytes(b"partial")
    run_ranks(_train_rank, 1, _overrides(run_dir, "training.train_steps=4"))
    assert not (ckpt / "step_00000003.tmp").exists()
    assert (ckpt / "latest").read_text().strip() == "4"
    assert _steps(run_dir) == [1, 2, 3, 4]


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_crafted_pickle_in_the_rng_state_is_refused_and_does_not_run(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "payload_ran"
    done = subprocess.run(_cmd(run_dir, "training.train_steps=4", "training.exit_interval=2"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    step = run_dir / "checkpoints" / "step_00000002"
    rng = torch.load(step / "rng_rank0.pt", weights_only=True)
    assert {"cpu", "tracker"} <= set(rng) and isinstance(rng["cpu"], torch.Tensor)   # plain tensors
    shutil.copytree(run_dir, tmp_path / "run2")          # the same run, for the .metadata attack
    torch.save({"cpu": _Payload(marker)}, step / "rng_rank0.pt")
    write_checksums(step)                     # the attacker rewrites checksums.json to match
    relaunch = subprocess.run(_cmd(run_dir, "training.train_steps=4"), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 2, relaunch.stderr[-2000:]
    error = relaunch.stderr[relaunch.stderr.index("error: "):]
    assert error.startswith(f"error: {step / 'rng_rank0.pt'}: refused to load: it is not plain "
                            f"tensors (torch.load(weights_only=True)"), error
    assert "nothing was run" in error
    assert not marker.exists()
    # torch's reader unpickles <step>/.metadata with plain pickle.load: refused before it runs.
    run2 = tmp_path / "run2"
    step2 = run2 / "checkpoints" / "step_00000002"
    (step2 / ".metadata").write_bytes(pickle.dumps({"state_dict_metadata": _Payload(marker)}))
    write_checksums(step2)
    relaunch = subprocess.run(_cmd(run2, "training.train_steps=4"), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 2, relaunch.stderr[-2000:]
    error = relaunch.stderr[relaunch.stderr.index("error: "):]
    assert error.startswith(f"error: {step2 / '.metadata'}: refused to load: the pickle names "
                            f"posix.mkdir"), error
    assert "nothing was executed" in error
    assert not marker.exists()


def test_a_relaunch_asking_fewer_steps_than_the_checkpoint_stops(tmp_path):
    # It used to exit 0 having trained nothing and said nothing.
    run_dir = tmp_path / "run"
    done = subprocess.run(_cmd(run_dir, "training.train_steps=4"), cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    again = subprocess.run(_cmd(run_dir, "training.train_steps=2"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2, again.stderr[-2000:]
    assert (f"error: training.train_steps: 2, but {run_dir} resumes from step 4, which is past it"
            in again.stderr), again.stderr[-2000:]
    assert _steps(run_dir) == [1, 2, 3, 4]                       # nothing rewritten


def test_checkpoints_copied_in_from_another_run_are_refused(tmp_path):
    # Same architecture, other lr: the copied checkpoints resumed silently and trained on as the
    # other run, exit 0. A whole run directory copied elsewhere stays the same run.
    a, b = tmp_path / "a", tmp_path / "b"
    for run_dir, lr in ((a, "1e-3"), (b, "5e-4")):
        done = subprocess.run(_cmd(run_dir, "training.train_steps=2", f"optim.lr={lr}"), cwd=ROOT,
                              env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    shutil.copytree(a, tmp_path / "a_moved")                       # the same run, moved
    shutil.rmtree(b / "checkpoints")
    shutil.copytree(a / "checkpoints", b / "checkpoints")
    again = subprocess.run(_cmd(b, "training.train_steps=4", "optim.lr=5e-4"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2, again.stderr[-2000:]
    assert (f"error: {b / 'checkpoints' / 'step_00000002'}: written by another run (run id "
            in again.stderr), again.stderr[-2000:]
    moved = subprocess.run(_cmd(tmp_path / "a_moved", "training.train_steps=4", "optim.lr=1e-3"),
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert moved.returncode == 0, moved.stderr[-2000:]
    assert _steps(tmp_path / "a_moved") == [1, 2, 3, 4]
