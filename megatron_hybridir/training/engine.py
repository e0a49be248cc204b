"""One forward-backward pass over a global batch through Megatron-Core's schedules.

Why it exists: the train loop, the parity tests and the benchmarks all need the same thing — wrap
model chunks in Megatron's DDP, run the schedule matching the pipeline layout over the micro-batches
of one global batch, and finalise gradients (DP all-reduce, sequence-parallel norms). Keeping it in
one function means the tests exercise exactly what training runs.

What it does not do: optimizer steps, learning-rate schedules, logging (the trainer owns those).
"""

from __future__ import annotations

from typing import Sequence

import torch
from megatron.core import parallel_state
from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_hybridir.config import LossConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.runtime.distributed import to_compute_device
from megatron_hybridir.training.forward_step import make_forward_step


def wrap_ddp(chunks: Sequence[torch.nn.Module], *, grad_reduce_in_fp32: bool = True,
             use_distributed_optimizer: bool = False) -> list[DistributedDataParallel]:
    """Megatron DDP around each chunk; wires the chunk config's hooks the schedules call."""
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=grad_reduce_in_fp32, overlap_grad_reduce=False,
        use_distributed_optimizer=use_distributed_optimizer)
    wrapped = [
        DistributedDataParallel(chunk.config, ddp_config, chunk,
                                # Bucketing only pays off with overlap; chunk>0 never overlaps.
                                disable_bucketing=i > 0)
        for i, chunk in enumerate(chunks)
    ]
    config = chunks[0].config
    config.no_sync_func = [m.no_sync for m in wrapped] if len(wrapped) > 1 else wrapped[0].no_sync
    config.finalize_model_grads_func = finalize_model_grads
    return wrapped


def zero_grads(model: Sequence[torch.nn.Module]) -> None:
    """Clear the DDP grad buffers and every ``param.grad``.

    NOTE: after ``optimizer.step()`` Megatron's optimizer leaves ``param.grad`` aliasing the
    ``main_grad`` buffer; if it is not cleared, the next backward accumulates into that alias and
    DDP's hook adds it to ``main_grad`` again, doubling every gradient.
    """
    for chunk in model:
        chunk.zero_grad_buffer()
        for param in chunk.parameters():
            param.grad = None


def run_schedule(model: Sequence[torch.nn.Module], micro_batches: Sequence[Batch], forward_step, *,
                 forward_only: bool = False) -> list[dict]:
    """Megatron's schedule for this pipeline layout over ``micro_batches`` (one iterator per chunk)."""
    first = micro_batches[0]
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        # NOTE: stages exchange activations of a fixed shape (shape negotiation per message
        # deadlocks the interleaved schedule on gloo and costs latency on NCCL), so every
        # micro-batch of a step must have the same shape ([rows, seq_length], or a packed
        # stream [1, T] with T this step's longest); the schedule is given it per call.
        shapes = {tuple(mb.input_ids.shape) for mb in micro_batches}
        if len(shapes) != 1:
            raise ValueError(f"pipeline parallelism needs micro-batches of one shape, got "
                             f"{sorted(shapes)}; pad every micro-batch to data.seq_length")
    # Every forward step receives its batch here, on the device the model runs on.
    iterators = [map(to_compute_device, micro_batches) for _ in model]
    return get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iterators if len(model) > 1 else iterators[0],
        model=list(model) if len(model) > 1 else model[0],
        num_microbatches=len(micro_batches),
        seq_length=first.input_ids.size(1),
        micro_batch_size=first.input_ids.size(0),
        forward_only=forward_only,
    )


def forward_backward(model: Sequence[torch.nn.Module], micro_batches: Sequence[Batch], *,
                     loss: LossConfig, forward_only: bool = False) -> list[dict]:
    """Run one global batch; return the loss dicts of the last stage (empty list elsewhere).

    ``micro_batches`` are the batches of this data-parallel rank, in order; in-batch negatives
    span one micro-batch across DP ranks (see ``gradcache`` for the whole batch). Gradients are
    left in each parameter's ``main_grad``, reduced over data-parallel ranks.
    """
    if not forward_only:
        zero_grads(model)
    forward_step = make_forward_step(loss, dp_group=parallel_state.get_data_parallel_group())
    return run_schedule(model, micro_batches, forward_step, forward_only=forward_only)

