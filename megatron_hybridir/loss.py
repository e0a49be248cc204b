"""InfoNCE over the global batch: in-batch negatives from every data-parallel rank.

Why it exists: a retriever learns from negatives, and the cheapest negatives are the other pairs of
the batch. With data parallelism each rank holds a slice; gathering the passages of all ranks gives
every query B - 1 in-batch negatives instead of b - 1. Gradients must still reach the rank that
owns each row, which :func:`gather_with_grad` arranges.

Loss of rank r (local queries q_i, global candidates C = [P_all ; N_all]):
    L_r = mean_i  -log softmax(scale * q_i . C^T)[label_i],   label_i = r * b + i
DDP averages gradients over ranks, so the trained objective is the mean of L_r over ranks, which
equals the loss of the concatenated global batch in one process (tested).

False negatives: with ``positive_ids`` (content ids of each query's positive, ``data/content_id``)
a candidate column whose passage has the query's positive id is masked (logit -inf): a copy of
the positive that another item or source brought into the batch is not a negative. An optional
``margin`` also masks candidates scoring above the positive's score + margin. The query's own
positive column is never masked; with nothing to mask the loss is the unmasked loss, bit for bit.

What it does not do: know about models or Megatron's parallel state; the caller passes the
data-parallel group (never the world group: under TP that would duplicate rows, under PP it would
hang on ranks that hold no embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.world = dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        # NOTE: all_reduce + slice instead of reduce_scatter, which gloo does not implement.
        # Embedding gradients are [B, d], so the extra traffic is negligible next to the model's.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad.chunk(ctx.world, dim=0)[ctx.rank], None


def gather_with_grad(x: Tensor, group=None) -> Tensor:
    """Concatenate ``x`` from every rank of ``group`` (dim 0, equal sizes); identity if alone."""
    if group is None or not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    return _GatherWithGrad.apply(x, group)


def gather_ids(x: Tensor, group=None) -> Tensor:
    """Concatenate an id tensor from every rank of ``group`` (no gradient); identity if alone."""
    if group is None or not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


def false_negative_mask(logits: Tensor, labels: Tensor, *, query_ids: Optional[Tensor],
                        candidate_ids: Optional[Tensor], scale, margin: Optional[float] = None
                        ) -> Tensor:
    """[b, C] bool: candidates sharing the query's positive content id (id 0 = unknown, never
    matched), or (``margin``) scoring above the positive + margin; never the label column."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    if query_ids is not None:
        mask |= (candidate_ids[None, :] == query_ids[:, None]) & (candidate_ids[None, :] != 0)
    if margin is not None:
        scores = logits.detach() / (scale.detach() if isinstance(scale, Tensor) else scale)
        mask |= scores > scores.gather(1, labels[:, None]) + margin
    mask[torch.arange(logits.size(0), device=logits.device), labels] = False
    return mask


def _rank_in(group) -> int:
    if group is None or not dist.is_initialized():
        return 0
    return dist.get_rank(group)


@dataclass
class ContrastiveOutput:
    loss: Tensor
    """Scalar loss of this rank's queries (what backward is called on)."""
    accuracy: Tensor
    """Fraction of this rank's queries whose best candidate is their positive (in-batch acc@1)."""
    masked: Optional[Tensor] = None
    """Candidates masked as false negatives for this rank's queries (None: masking off)."""
    distillation: Optional[Tensor] = None
    """The distillation term (unweighted) of this rank's queries (None: distillation off)."""


def info_nce(query: Tensor, positive: Tensor, negatives: Optional[Tensor] = None, *,
             scale: Union[float, Tensor], group=None, symmetric: bool = False,
             positive_ids: Optional[Tensor] = None, negative_ids: Optional[Tensor] = None,
             margin: Optional[float] = None) -> ContrastiveOutput:
    """InfoNCE with global in-batch negatives and optional hard negatives.

    query [b, d], positive [b, d], negatives [b, k, d] (hard negatives of each query) or None.
    ``scale`` is 1 / temperature (a tensor when learnable). Every rank of ``group`` must pass the
    same b and k. ``positive_ids`` [b] / ``negative_ids`` [b, k] (int64 content ids) and ``margin``
    switch on false-negative masking (module docstring).
    """
    b = query.size(0)
    if positive.shape != query.shape:
        raise ValueError(f"positive shape {tuple(positive.shape)} != query shape {tuple(query.shape)}")
    candidates = [gather_with_grad(positive, group)]  # [B, d]
    if negatives is not None and negatives.numel() > 0:
        if negatives.dim() != 3 or negatives.size(0) != b:
            raise ValueError(f"negatives must be [b, k, d] with b={b}, got {tuple(negatives.shape)}")
        candidates.append(gather_with_grad(negatives.reshape(-1, negatives.size(-1)), group))
    candidates = torch.cat(candidates, dim=0)  # [B + B*k, d]
    labels = _rank_in(group) * b + torch.arange(b, device=query.device)
    logits = scale * query @ candidates.T  # [b, B + B*k]
    masked = None
    if positive_ids is not None or margin is not None:
        all_ids = None
        if positive_ids is not None:
            all_ids = [gather_ids(positive_ids, group)]
            if negatives is not None and negatives.numel() > 0:
                if negative_ids is None or negative_ids.numel() != negatives.size(0) * negatives.size(1):
                    raise ValueError("negative_ids must be [b, k] like the negatives when "
                                     "positive_ids are given")
                all_ids.append(gather_ids(negative_ids.reshape(-1), group))
            all_ids = torch.cat(all_ids)
        mask = false_negative_mask(logits, labels, query_ids=positive_ids, candidate_ids=all_ids,
                                   scale=scale, margin=margin)
        logits = logits.masked_fill(mask, float("-inf"))
        masked = mask.sum()
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        all_queries = gather_with_grad(query, group)  # [B, d]
        back = scale * positive @ all_queries.T
        if positive_ids is not None:    # queries whose positive is a copy of this one's
            back = back.masked_fill(false_negative_mask(
                back, labels, query_ids=positive_ids, candidate_ids=all_ids[:all_queries.size(0)],
                scale=scale), float("-inf"))
        loss = 0.5 * (loss + F.cross_entropy(back, labels))
    accuracy = (logits.detach().argmax(dim=-1) == labels).float().mean()
    return ContrastiveOutput(loss=loss, accuracy=accuracy, masked=masked)
