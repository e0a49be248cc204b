"""The forward step Megatron-Core's pipeline schedules call for each micro-batch.

Why it exists: the schedules (no pipelining, 1F1B, interleaved) expect a ``forward_step(data_iterator,
model) -> (output, loss_func)``. Queries, positives and hard negatives of a micro-batch travel as one
token tensor (rows ``[q_0..q_b-1, p_0..p_b-1, n_0,0..n_b-1,k-1]``) so that every pipeline stage sends
one activation tensor; the loss on the last stage splits the embeddings again.

What it does not do: sampling or collation (the data pipeline builds the ``data/batch.Batch``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator, Sequence

import torch
from megatron.core import parallel_state
from torch import Tensor

from megatron_hybridir.config import LossConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.distillation import distillation_loss, own_negative_mask, student_scores
from megatron_hybridir.loss import ContrastiveOutput, info_nce
from megatron_hybridir.matryoshka import matryoshka_info_nce
from megatron_hybridir.model.unwrap import unwrap


def split_embeddings(embeddings: Tensor, *, num_queries: int, num_negatives: int):
    """[b*(2+k), d] -> query [b, d], positive [b, d], negatives [b, k, d] or None."""
    b, k = num_queries, num_negatives
    expected = b * (2 + k)
    if embeddings.size(0) != expected:
        raise ValueError(f"expected {expected} rows (b={b}, k={k}), got {embeddings.size(0)}")
    query, positive = embeddings[:b], embeddings[b:2 * b]
    negatives = embeddings[2 * b:].view(b, k, -1) if k > 0 else None
    return query, positive, negatives


def contrastive_loss(embeddings: Sequence[Tensor], batches: Sequence[Batch], *, model,
                     loss: LossConfig, dp_group) -> ContrastiveOutput:
    """InfoNCE over the pairs of one or several micro-batches (their embeddings in batch layout).

    The scale is the model's learnable inverse temperature when it has one, else 1 / temperature.
    With ``loss.matryoshka_dims`` the objective is the Matryoshka sum over prefixes.
    """
    parts = [split_embeddings(e, num_queries=b.num_queries, num_negatives=b.num_negatives)
             for e, b in zip(embeddings, batches)]
    query = torch.cat([p[0] for p in parts])
    positive = torch.cat([p[1] for p in parts])
    negatives = torch.cat([p[2] for p in parts]) if parts[0][2] is not None else None
    scale = unwrap(model).logit_scale()
    objective = info_nce
    if loss.matryoshka_dims:
        objective = functools.partial(matryoshka_info_nce, dims=loss.matryoshka_dims,
                                      weights=loss.matryoshka_weights)
    masking = false_negative_args(batches, loss)
    out = objective(query, positive, negatives,
                    scale=scale if scale is not None else 1.0 / loss.temperature,
                    group=dp_group, symmetric=loss.symmetric, **masking)
    if loss.distillation.weight > 0:
        term = distillation_term(query, positive, negatives, batches, loss=loss, masking=masking)
        out = dataclasses.replace(out, loss=out.loss + loss.distillation.weight * term,
                                  distillation=term.detach())
    return out


def distillation_term(query: Tensor, positive: Tensor, negatives, batches: Sequence[Batch], *,
                      loss: LossConfig, masking: dict) -> Tensor:
    """The distillation loss of the rows (full embedding), false-negative masked like InfoNCE."""
    if negatives is None or any(b.teacher_scores is None for b in batches):
        raise ValueError("loss.distillation.weight > 0 needs teacher scores on every batch and "
                         "loss.num_hard_negatives >= 1 (tools/mine_hard_negatives.py --teacher)")
    cfg = loss.distillation
    scores = student_scores(query, positive, negatives)
    masked = None
    if masking:
        masked = own_negative_mask(scores, positive_ids=masking.get("positive_ids"),
                                   negative_ids=masking.get("negative_ids"),
                                   margin=masking.get("margin"))
    teacher = torch.cat([b.teacher_scores for b in batches]).to(scores.device)
    return distillation_loss(scores, teacher, kind=cfg.kind, temperature=cfg.temperature,
                             teacher_temperature=cfg.teacher_temperature, masked=masked)


def false_negative_args(batches: Sequence[Batch], loss: LossConfig) -> dict:
    """Content ids of the micro-batches (concatenated like their embeddings) and the margin.

    Masking needs the ids on every DP rank alike (they are all-gathered with the embeddings), so a
    batch without ids (synthetic data, folders preprocessed before content ids) turns it off.
    """
    if not loss.mask_false_negatives:
        return {}
    out = {"margin": loss.false_negative_margin}
    if all(b.has_content_ids for b in batches):
        out["positive_ids"] = torch.cat([b.positive_ids for b in batches])
        out["negative_ids"] = torch.cat([b.negative_ids.view(b.num_queries, -1) for b in batches])
    elif loss.false_negative_margin is None:
        return {}
    return out


def embed(model, batch: Batch) -> Tensor:
    """The model's output for a batch; queries, positives and negatives as separate forward passes
    when the collator gave their lengths (``segment_lengths``) and there is one pipeline stage.

    Why: padding short queries to the longest passage wastes compute (attention is quadratic in
    it); each row's embedding depends only on its real tokens, so trimming each segment to its own
    longest row (rounded to the collator's multiple) changes nothing but the work. Pipeline stages
    exchange activations of one fixed shape, so they keep the whole batch. A packed batch
    (``data.packing``) is one pass over its token stream, rows kept apart by ``cu_seqlens``.
    """
    ids, mask, lengths = batch.input_ids, batch.attention_mask, batch.segment_lengths
    if batch.is_packed:
        return model(ids, mask, cu_seqlens=batch.cu_seqlens)
    if lengths is None or parallel_state.get_pipeline_model_parallel_world_size() > 1:
        return model(ids, mask)
    b = batch.num_queries
    bounds = [0, b, 2 * b, ids.size(0)]
    return torch.cat([model(ids[start:end, :length], mask[start:end, :length])
                      for start, end, length in zip(bounds, bounds[1:], lengths) if end > start])


def make_forward_step(loss: LossConfig, *, dp_group) -> Callable:
    """Build the schedule's forward step; ``dp_group`` is Megatron's data-parallel group."""

    def forward_step(data_iterator: Iterator[Batch], model):
        batch = next(data_iterator)
        output = embed(model, batch)

        def loss_func(embeddings: Tensor):
            out = contrastive_loss([embeddings], [batch], model=model, loss=loss, dp_group=dp_group)
            stats = {"loss": out.loss.detach().clone(), "accuracy": out.accuracy}
            if out.masked is not None:
                stats["masked"] = out.masked
            if out.distillation is not None:
                stats["distillation"] = out.distillation
            return out.loss, stats

        return output, loss_func

    return forward_step
