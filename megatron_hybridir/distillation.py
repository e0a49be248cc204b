"""Distillation from teacher scores of each query's positive and hard negatives.

Why it exists: a cross-encoder (or a stronger bi-encoder) ranks a query's candidates better than
the student; its scores, stored with the training records (``tools/mine_hard_negatives.py
--teacher``), tell the student how much worse each hard negative is, not only that it is worse.
The term is added to InfoNCE (``loss.distillation.weight``); in-batch negatives stay contrastive.

Per row i, with student cosine scores s_i = [q_i . p_i, q_i . n_i1, .., q_i . n_ik] and teacher
scores t_i (same order), T = ``temperature``, T_t = ``teacher_temperature``:
    kl:          KL(softmax(t_i / T_t) || softmax(s_i / T))      over the row's valid columns
    margin_mse:  mean_j ((s_i0 - s_ij) / T - (t_i0 - t_ij) / T_t)^2   over the valid negatives j
and the loss is the mean over rows. A column is invalid (excluded from the softmax and the margins)
where the teacher has no score (NaN: a negative the collator filled in from another item's
positive) or where false-negative masking masks that hard negative for InfoNCE: a copy of the
positive, or one scoring above the positive + margin. Excluding it from both terms keeps the
objectives consistent: the student is not pushed to rank below the positive a passage InfoNCE has
just declared a positive, whatever score the teacher gave it.

Every term depends only on its own row, so the loss is a mean of per-row values: under data
parallelism (equal rows per rank, DDP's gradient average) and GradCache (the rank's micro-batches
concatenated) it equals the one-process loss of the whole batch, with no communication.

What it does not do: produce teacher scores (``mining/teacher.py``) or mask in-batch negatives
(``loss.py``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

KINDS = ("kl", "margin_mse")


def student_scores(query: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
    """[b, 1 + k] cosine scores of each query with its positive and its own hard negatives
    (query [b, d], positive [b, d], negatives [b, k, d], unit-norm like InfoNCE's inputs)."""
    pos = (query * positive).sum(-1, keepdim=True)                 # [b, 1]
    neg = torch.einsum("bd,bkd->bk", query, negatives)             # [b, k]
    return torch.cat([pos, neg], dim=1)


def own_negative_mask(scores: Tensor, *, positive_ids: Optional[Tensor] = None,
                      negative_ids: Optional[Tensor] = None,
                      margin: Optional[float] = None) -> Tensor:
    """[b, 1 + k] bool: the hard negatives InfoNCE's false-negative masking masks for their own
    query (``loss.false_negative_mask`` on these columns); the positive column is never masked."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if positive_ids is not None:
        neg_ids = negative_ids.view(scores.size(0), -1)
        mask[:, 1:] |= (neg_ids == positive_ids[:, None]) & (neg_ids != 0)
    if margin is not None:
        s = scores.detach()
        mask[:, 1:] |= s[:, 1:] > s[:, :1] + margin
    return mask


def distillation_loss(scores: Tensor, teacher: Tensor, *, kind: str, temperature: float,
                      teacher_temperature: float, masked: Optional[Tensor] = None) -> Tensor:
    """Mean over rows of the distillation term (module docstring).

    ``scores`` [b, 1 + k] student cosine scores (column 0: the positive), ``teacher`` [b, 1 + k]
    the teacher's (NaN: no score), ``masked`` [b, 1 + k] bool columns to exclude or None.
    """
    if kind not in KINDS:
        raise ValueError(f"distillation kind {kind!r}: expected one of {KINDS}")
    if teacher.shape != scores.shape:
        raise ValueError(f"teacher scores shape {list(teacher.shape)} != student scores "
                         f"{list(scores.shape)} ([b, 1 + num_hard_negatives])")
    if not torch.isfinite(teacher[:, 0]).all():
        raise ValueError("teacher score of a positive is not finite; every positive needs one")
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()     # a softmax at T = 0.05 over bf16 scores loses the margins
    invalid = torch.isnan(teacher)
    if masked is not None:
        invalid = invalid | masked
    invalid[:, 0] = False
    teacher = teacher.to(scores.dtype).masked_fill(invalid, 0.0)
    if kind == "kl":
        s = (scores / temperature).masked_fill(invalid, float("-inf"))
        t = (teacher / teacher_temperature).masked_fill(invalid, float("-inf"))
        log_p_t, log_p_s = torch.log_softmax(t, dim=-1), torch.log_softmax(s, dim=-1)
        # 0 * (-inf) is NaN: invalid columns have p_t = 0 and contribute nothing.
        terms = (log_p_t.exp() * (log_p_t - log_p_s)).masked_fill(invalid, 0.0)
        return terms.sum(-1).mean()
    student_margin = (scores[:, :1] - scores[:, 1:]) / temperature           # [b, k]
    teacher_margin = (teacher[:, :1] - teacher[:, 1:]) / teacher_temperature
    valid = ~invalid[:, 1:]
    sq = ((student_margin - teacher_margin) ** 2).masked_fill(~valid, 0.0)
    # Mean per row over its valid negatives (a row with none contributes 0), then over rows:
    # per-row values keep DP and GradCache equal to one process.
    return (sq.sum(-1) / valid.sum(-1).clamp(min=1)).mean()
