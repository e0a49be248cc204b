"""One job at a time per run directory: a kernel lock that dies with the process holding it.

Why it exists: two trainings launched on one ``checkpoint.dir`` both exited 0: the second resumed
from the first's checkpoint while the first still trained, both wrote the same steps into one
folder, and the second rewrote ``metrics.jsonl`` under the first (issue 24). Rank 0 now takes an
exclusive ``flock`` on ``<run_dir>/run.lock`` before anything in the run directory is read or
written, holds it until the run ends, and every rank learns the outcome (a broadcast), so all ranks
stop together. Who holds it (host, pid, Slurm job id, start time) goes into ``run.lock.json`` beside
it, for the error the next launch prints.

The kernel drops a flock when its process dies (SIGKILL, OOM kill, node loss ends the process), so
a killed job leaves no lock behind, and a Slurm requeue (``slurm/launch.sh`` requeues after ``srun``
returned, i.e. after the old ranks exited) takes it again. A stale ``run.lock.json`` is simply
overwritten by the next holder.

``fcntl.flock`` directly rather than ``filelock``: ``filelock`` 4 falls back to a lock *file* on a
filesystem without flock, which outlives a killed holder and would block every requeue; here such a
filesystem stops the launch, saying so.

What it does not do: lock checkpoints against readers (export, ``init_from`` of another run), or
decide what a relaunch may change (``training/run_identity``).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Optional

import torch.distributed as dist

from megatron_hybridir import atomic

LOCK_FILE = "run.lock"
HOLDER_FILE = "run.lock.json"


class RunDirLockedError(RuntimeError):
    """Another job holds the run directory (the message names it), or it cannot be locked."""


def _holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _describe(record: Optional[dict]) -> str:
    if not record:
        return "a process that has not yet written its record"
    job = f", Slurm job {record['slurm_job_id']}" if record.get("slurm_job_id") else ""
    return (f"host {record.get('host')}, pid {record.get('pid')}{job}, started "
            f"{record.get('started')}")


class RunLock:
    """The exclusive lock of one run directory, held by this process from ``acquire`` to
    ``release`` (or its death)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise :class:`RunDirLockedError` naming the holder."""
        path = self.run_dir / LOCK_FILE
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:    # a file in the way, a read-only or full filesystem
            raise RunDirLockedError(f"checkpoint.dir={self.run_dir}: cannot be used as the run "
                                    f"directory: {err.strerror} ({err.filename})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirLockedError(
                    f"{self.run_dir}: the run directory is in use by another training job "
                    f"({_describe(self.holder())}; recorded in {self.run_dir / HOLDER_FILE}). "
                    f"Two jobs on one checkpoint.dir would overwrite each other's checkpoints; "
                    f"wait for it to end, stop it, or choose another checkpoint.dir") from None
            raise RunDirLockedError(
                f"{path}: cannot lock the run directory ({os.strerror(err.errno)}): its "
                f"filesystem does not support flock (on Lustre mount with -o flock); put "
                f"checkpoint.dir on one that does") from None
        self.fd = fd
        atomic.write_text(self.run_dir / HOLDER_FILE, json.dumps(_holder_record(), indent=1))

    def holder(self) -> Optional[dict]:
        """The last holder's record (None: not written yet, or unreadable)."""
        try:
            return json.loads((self.run_dir / HOLDER_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def hold_run_dir(run_dir: Optional[Path], *, rank: int) -> Optional[RunLock]:
    """Rank 0 takes the run directory's lock; every rank raises :class:`RunDirLockedError` if it
    could not (collective when a process group exists). Returns rank 0's lock (None elsewhere)."""
    if run_dir is None:
        return None
    lock, failure = None, None
    if rank == 0:
        lock = RunLock(run_dir)
        try:
            lock.acquire()
        except RunDirLockedError as err:
            lock, failure = None, str(err)
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [failure]
        dist.broadcast_object_list(box, src=0)
        failure = box[0]
    if failure is not None:
        raise RunDirLockedError(failure)
    return lock
