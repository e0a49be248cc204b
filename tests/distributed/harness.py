"""Spawn gloo ranks for multi-process tests; each rank runs a top-level function."""

from __future__ import annotations

import os
import warnings

import torch.multiprocessing as mp

from megatron_hybridir.runtime.distributed import LaunchEnv, free_port


def _entry(rank: int, world_size: int, port: int, fn, args: tuple) -> None:
    warnings.filterwarnings("ignore")
    os.environ["OMP_NUM_THREADS"] = "1"
    # Look like torchrun to library code that reads the launcher's variables itself.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(1)
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(int(os.environ.get("HYBRIDIR_RANK_TIMEOUT", "240")), exit=True,
                                      file=sys.stderr)
    launch = LaunchEnv(rank=rank, world_size=world_size, local_rank=rank,
                       master_addr="127.0.0.1", master_port=port)
    try:
        fn(launch, *args)
    finally:
        from megatron_hybridir.runtime.distributed import shutdown

        shutdown()


def run_ranks(fn, world_size: int, *args) -> None:
    """Run ``fn(launch_env, *args)`` on ``world_size`` spawned processes; raise if any fails."""
    mp.start_processes(_entry, args=(world_size, free_port(), fn, args), nprocs=world_size,
                       join=True, start_method="spawn")
