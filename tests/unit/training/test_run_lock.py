"""The run directory's lock (issue 24 item 2): a second holder is refused naming the first (host,
pid, Slurm job id, start time), and a lock whose holder was SIGKILLed is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_hybridir.training.run_lock import HOLDER_FILE, RunDirLockedError, RunLock

ROOT = Path(__file__).resolve().parents[3]
HOLD = ("import sys, time; from megatron_hybridir.training.run_lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)")


def _holder(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SLURM_JOB_ID="4242")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RunDirLockedError) as err:
            RunLock(tmp_path).acquire()
        message = str(err.value)
        assert "the run directory is in use by another training job" in message
        assert (f"host {socket.gethostname()}, pid {holder.pid}, Slurm job 4242, started "
                in message)
        assert str(tmp_path / HOLDER_FILE) in message
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_the_lock_of_a_sigkilled_holder_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()                        # the kernel released the dead holder's flock
    assert lock.holder()["pid"] == os.getpid()   # its stale record is replaced
    lock.release()
    again = RunLock(tmp_path)
    again.acquire()                       # released locks can be taken again in-process
    again.release()


def test_a_run_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(RunDirLockedError, match=rf"^checkpoint.dir={tmp_path / 'run'}: cannot be "
                                                rf"used as the run directory: File exists "):
        RunLock(tmp_path / "run").acquire()
