"""GradCache (Gao et al., 2021) on Megatron-Core's pipeline schedules.

Why it exists: with pipeline parallelism a micro-batch holds a handful of pairs, so in-batch
negatives would span only b - 1 passages. GradCache decouples the loss from the micro-batch:

1. pass 1 runs every micro-batch forward only (Megatron's schedule, ``forward_only=True``) and keeps
   the pooled embeddings on the last pipeline stage;
2. the loss is computed once over the rank's whole local batch, with passages gathered over the
   data-parallel group, and d(loss)/d(embedding) is cached;
3. pass 2 re-runs each micro-batch with gradients and back-propagates the surrogate
   ``<embedding, cached_grad>``, whose gradient w.r.t. the parameters equals that of the full loss.

RNG: dropout must draw the same masks in both passes, so the RNG states (default generator and the
model-parallel tracker) are snapshotted before pass 1 and restored before pass 2. ``check_replay``
verifies that pass 2 reproduces pass 1's embeddings.

What it does not do: optimizer steps or data loading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from megatron.core import parallel_state

from megatron_hybridir.config import LossConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.runtime.rng import rng_restore, rng_snapshot
from megatron_hybridir.training.engine import run_schedule, zero_grads
from megatron_hybridir.training.forward_step import contrastive_loss, embed


@dataclass(frozen=True, eq=False)
class _ReplayBatch(Batch):
    """A micro-batch of pass 2: the batch plus its cached d(loss)/d(embedding) [rows, d] (None off
    the last stage), which ``Batch.to`` moves with it, and its index for the replay check."""
    cached_grad: Optional[torch.Tensor] = None
    micro_index: int = 0


def _embedding_step(data_iterator, model):
    batch = next(data_iterator)
    output = embed(model, batch)
    return output, lambda emb: (emb.sum() * 0.0, {"embeddings": emb.detach()})


def _cached_loss(embeddings: list[torch.Tensor], micro_batches: Sequence[Batch], *, model,
                 loss: LossConfig) -> tuple[list[torch.Tensor], dict]:
    """Full-batch loss on the last stage; returns d(loss)/d(embedding) per micro-batch."""
    leaves = [e.clone().requires_grad_(True) for e in embeddings]
    out = contrastive_loss(leaves, micro_batches, model=model, loss=loss,
                           dp_group=parallel_state.get_data_parallel_group())
    out.loss.backward()
    stats = {"loss": out.loss.detach(), "accuracy": out.accuracy}
    if out.masked is not None:
        stats["masked"] = out.masked
    if out.distillation is not None:
        stats["distillation"] = out.distillation
    return [leaf.grad for leaf in leaves], stats


def gradcache_forward_backward(model: Sequence[torch.nn.Module], micro_batches: Sequence[Batch], *,
                               loss: LossConfig, check_replay: bool = False) -> list[dict]:
    """One global batch with in-batch negatives over all micro-batches and all DP ranks.

    Returns ``[{"loss", "accuracy"}]`` on the last pipeline stage (empty elsewhere); gradients are
    left in ``main_grad`` like ``engine.forward_backward``.
    """
    zero_grads(model)
    snapshot = rng_snapshot()
    cached = run_schedule(model, micro_batches, _embedding_step, forward_only=True)
    is_last = parallel_state.is_pipeline_last_stage()
    grads, stats, embeddings = [None] * len(micro_batches), {}, []
    if is_last:
        embeddings = [c["embeddings"] for c in cached]
        # A learnable temperature is a head parameter (last chunk): this backward also leaves its
        # gradient in main_grad (Megatron DDP's hook), to be reduced with the rest after pass 2.
        grads, stats = _cached_loss(embeddings, micro_batches, model=model[-1], loss=loss)
    rng_restore(snapshot)
    batches = [_ReplayBatch(**{f.name: getattr(mb, f.name) for f in dataclasses.fields(mb)},
                            cached_grad=g, micro_index=i)
               for i, (mb, g) in enumerate(zip(micro_batches, grads))]
    num_micro = len(micro_batches)

    def surrogate_step(data_iterator, chunk):
        batch = next(data_iterator)
        output = embed(chunk, batch)

        def loss_func(emb):
            if check_replay:
                drift = (emb.detach() - embeddings[batch.micro_index]).abs().max().item()
                if drift > 1e-5:
                    raise RuntimeError(f"GradCache pass 2 did not replay pass 1 (max diff {drift})")
            # The schedule divides each micro-batch's loss by the number of micro-batches.
            surrogate = (emb * batch.cached_grad).sum() * num_micro
            return surrogate, {}

        return output, loss_func

    run_schedule(model, batches, surrogate_step, forward_only=False)
    return [stats] if is_last else []

