"""Process groups, device selection and Megatron-Core parallel state.

Why it exists: one function, :func:`initialize`, takes a run from "some processes were started"
(by torchrun, srun, a test's spawn, or plain ``python``) to "Megatron's TP/PP/DP groups exist and
the model-parallel RNG is seeded". CUDA + NCCL when a GPU is present; otherwise CPU + gloo with the
compatibility layer of ``cpu_compat``.

What it does not do: build models or read configs beyond ParallelConfig.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.distributed as dist

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.runtime.cpu_compat import apply_cpu_compat

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits, as told by the launcher."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm nodelist such as ``gpu[003-005,009],cpu01`` -> ``gpu003`` or
    ``node[1-4]-ib`` -> ``node1-ib`` (a suffix after the brackets belongs to every host).
    slurm/launch.sh sets MASTER_ADDR with ``scontrol show hostnames`` instead, where it can."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\]([^,\[]*))?", nodelist.strip())
    if match is None:
        raise ValueError(f"cannot parse SLURM nodelist {nodelist!r}")
    prefix, ranges, suffix = match.group(1), match.group(2), match.group(3)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first + suffix


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(environ: Optional[Mapping[str, str]] = None) -> LaunchEnv:
    """Read torchrun variables, else Slurm's, else assume a single local process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                         local_rank=int(env.get("LOCAL_RANK", 0)),
                         master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                         master_port=int(env.get("MASTER_PORT", 29500)))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        job_id = int(env.get("SLURM_JOB_ID", "0"))
        return LaunchEnv(rank=int(env["SLURM_PROCID"]), world_size=int(env["SLURM_NTASKS"]),
                         local_rank=int(env.get("SLURM_LOCALID", 0)),
                         master_addr=env.get("MASTER_ADDR")
                         or first_slurm_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1")),
                         # A port derived from the job id lets concurrent jobs share a node.
                         master_port=int(env.get("MASTER_PORT", 20000 + job_id % 20000)))
    return LaunchEnv(rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1",
                     master_port=int(env.get("MASTER_PORT", 0)) or free_port())


@dataclass(frozen=True)
class RuntimeInfo:
    rank: int
    world_size: int
    device: torch.device
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    dp_rank: int
    dp_size: int


def compute_device() -> torch.device:
    """Where models, batches and the tensors of collectives live: this rank's GPU under NCCL, else
    the CPU (the backend follows the device, see :func:`initialize`)."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def to_compute_device(batch):
    """``batch`` (a ``data/batch.Batch``, or anything with ``.to(device)``) on
    :func:`compute_device`; the caller's batch is left where it was."""
    return batch.to(compute_device())


def select_device(local_rank: int) -> torch.device:
    """The GPU of this local rank, or the CPU (activating the compatibility layer)."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    apply_cpu_compat()
    return torch.device("cpu")


def initialize(parallel: ParallelConfig, *, seed: int, launch: Optional[LaunchEnv] = None,
               timeout_minutes: int = 30) -> RuntimeInfo:
    """Create the default process group and Megatron's TP/PP/DP groups; seed every RNG."""
    from megatron.core import parallel_state
    from megatron_hybridir.runtime.rng import seed_all

    launch = launch or launch_env()
    device = select_device(launch.local_rank)
    tp, pp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size
    if launch.world_size % (tp * pp) != 0:
        raise ValueError(f"world size {launch.world_size} is not divisible by "
                         f"tensor_model_parallel_size x pipeline_model_parallel_size = {tp * pp}")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
            rank=launch.rank, world_size=launch.world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes))
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        # Megatron's optimizer looks up the gloo DP group (its default, also on GPUs); the CPU
        # compatibility layer also exchanges distributed-optimizer state over it.
        create_gloo_process_groups=True)
    seed_all(seed)
    info = RuntimeInfo(
        rank=launch.rank, world_size=launch.world_size, device=device,
        tp_rank=parallel_state.get_tensor_model_parallel_rank(), tp_size=tp,
        pp_rank=parallel_state.get_pipeline_model_parallel_rank(), pp_size=pp,
        dp_rank=parallel_state.get_data_parallel_rank(),
        dp_size=parallel_state.get_data_parallel_world_size())
    if launch.rank == 0:
        logger.info("initialised %d process(es) on %s: TP=%d PP=%d DP=%d", launch.world_size,
                    device.type, tp, pp, info.dp_size)
    return info


def ensure_runtime(seed: int = 1234) -> None:
    """A one-process Megatron parallel state (TP=PP=1) unless the caller already made one (the
    conversion tools, verification and the demo build whole models outside a training run)."""
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        initialize(ParallelConfig(), seed=seed)


def shutdown() -> None:
    """Destroy Megatron's groups and the default group (safe to call twice)."""
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
