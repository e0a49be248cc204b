"""Snapshot and restore every RNG stream a training step draws from.

Why it exists: GradCache must replay dropout masks in its second pass, and a resumed run must draw
what the uninterrupted run would have drawn. Both need the same three streams: the default CPU
generator, the CUDA generator when present, and Megatron's model-parallel tracker states.
"""

from __future__ import annotations

import torch
from megatron.core.tensor_parallel import get_cuda_rng_tracker


def seed_all(seed: int) -> None:
    """Seed the default generator and Megatron's model-parallel streams (parallel state must exist),
    so what is built next does not depend on what the process drew before."""
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def rng_snapshot() -> tuple:
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    tracker = {k: v.clone() for k, v in get_cuda_rng_tracker().get_states().items()}
    return torch.get_rng_state(), cuda, tracker


def rng_restore(snapshot: tuple) -> None:
    cpu, cuda, tracker = snapshot
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
    get_cuda_rng_tracker().set_states({k: v.clone() for k, v in tracker.items()})
