"""Launcher environments (torchrun, Slurm, plain python) and the CPU compatibility layer."""

from __future__ import annotations

import torch

from megatron_hybridir.runtime.distributed import first_slurm_host, launch_env


def test_torchrun_variables_win():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1",
           "MASTER_PORT": "1234", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    got = launch_env(env)
    assert (got.rank, got.world_size, got.local_rank, got.master_addr, got.master_port) == (
        3, 8, 1, "n1", 1234)


def test_slurm_variables():
    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
           "SLURM_JOB_NODELIST": "gpu[003-004,009]", "SLURM_JOB_ID": "4242"}
    got = launch_env(env)
    assert (got.rank, got.world_size, got.local_rank, got.master_addr) == (9, 16, 1, "gpu003")
    assert got.master_port == 20000 + 4242


def test_single_process_default():
    got = launch_env({})
    assert (got.rank, got.world_size) == (0, 1) and got.master_port > 0


def test_slurm_nodelist_forms():
    assert first_slurm_host("node07") == "node07"
    assert first_slurm_host("a[1-3],b2") == "a1"
    assert first_slurm_host("gpu[12,15-16]") == "gpu12"
    # Suffixes after the brackets (InfiniBand host names): as `scontrol show hostnames` expands.
    assert first_slurm_host("node[1-4]-ib") == "node1-ib"
    assert first_slurm_host("node[07,09]-ib,login1") == "node07-ib"


def test_cpu_layer_is_active_here_and_tracker_forks_deterministically(megatron_runtime):
    from megatron.core.tensor_parallel import random as mcore_random

    from megatron_hybridir.runtime import cpu_compat

    assert not torch.cuda.is_available() and cpu_compat._APPLIED
    assert torch.cuda.current_device() == torch.device("cpu")
    tracker = mcore_random.get_cuda_rng_tracker()
    assert isinstance(tracker, cpu_compat.CpuRNGStatesTracker)
    outside = torch.get_rng_state()
    states = tracker.get_states()
    with tracker.fork():
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)  # the default stream is untouched
    tracker.set_states(states)
    with tracker.fork():
        b = torch.rand(3)
    assert torch.equal(a, b)  # restoring the tracker's states replays the same dropout draws
