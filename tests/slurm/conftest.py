"""The Slurm tier: a real one-node cluster (``scripts/slurm_local.sh``) for the launch path.

The session fixture starts the cluster through the script (and stops it at the end if it started
it), or skips the tier with the reason where it cannot run: not root, or Slurm / munge not
installed (``bash scripts/slurm_local.sh start`` installs them with apt). With
``HYBRIDIR_REQUIRE_SLURM=1`` (CI, once it starts the cluster) those skips are failures instead, so a
missing cluster cannot pass as a green run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "scontrol", "scancel")


def _unavailable(reason: str):
    if os.environ.get("HYBRIDIR_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm tier required (HYBRIDIR_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


@dataclass
class Cluster:
    """Submit to and query the local cluster; every call runs with its SLURM_CONF."""

    env: dict

    def run(self, *args: str, **kw) -> str:
        done = subprocess.run(list(args), env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=60, **kw)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout.strip()

    def sbatch(self, *args: str, env: dict | None = None) -> str:
        """Submit; the job id (for an array: the array's job id)."""
        done = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})},
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"sbatch {args} exited {done.returncode}: {done.stderr}"
        return done.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[dict]:
        """``scontrol show job`` records of a job (one per array task) as dicts."""
        out = self.run("scontrol", "show", "job", "-o", job_id)
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line]

    def wait(self, job_id: str, *, timeout: float = 600, done=("COMPLETED", "FAILED", "CANCELLED",
                                                                 "TIMEOUT", "NODE_FAIL")) -> list[dict]:
        """Poll until every record of ``job_id`` is in a final state; the records."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.jobs(job_id)
            if records and all(r["JobState"] in done for r in records):
                return records
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not finished after {timeout} s: {self.jobs(job_id)}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        _unavailable("the Slurm tier needs root (slurmd runs jobs as their user)")
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed (bash scripts/slurm_local.sh start "
                     f"installs slurmctld, slurmd, slurm-client and munge with apt)")
    state_dir = os.environ.get("SLURM_LOCAL_DIR", "/tmp/hybridir-slurm")
    env = dict(os.environ, SLURM_LOCAL_DIR=state_dir)
    was_running = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True,
                                 text=True).stdout.count(": running") == 3
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        _unavailable(f"scripts/slurm_local.sh start failed ({started.returncode}): "
                     f"{started.stderr[-2000:]}")
    # Jobs inherit this environment (sbatch --export=ALL): this interpreter first on PATH, the
    # checkout importable, CPU only, one thread per rank on the 2-core machine.
    job_env = dict(env, SLURM_CONF=f"{state_dir}/slurm.conf", PYTHONPATH=str(ROOT),
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                   OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        job_env.pop(key, None)
    yield Cluster(job_env)
    if not was_running:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, timeout=60)
