"""Matryoshka representation learning: one InfoNCE per embedding prefix, summed with weights.

Why it exists: truncated embeddings cut index memory (a 21M-passage index at 256 dims instead of
4096 fits one GPU), but only if the model was trained so that prefixes work on their own
(Kusupati et al., 2022; sentence-transformers' ``MatryoshkaLoss``). DESIGN.md section 8:

    L = sum_j w_j * InfoNCE(normalize(q[:, :d_j]), normalize(c[:, :d_j]))

with the same temperature, the same candidates (global in-batch negatives across data-parallel
ranks, hard negatives) for every j. Each term is the existing :func:`loss.info_nce`, so whatever it
does (DP gather with gradients, symmetric term, masks added later) applies to every prefix; under
GradCache the same function produces the cached embedding gradients. Truncation commutes with the
all-gather, so gathering per prefix is exact (and the gathered tensors are [B, d_j], small).

What it does not do: truncate at inference (``evaluation/matryoshka.py`` does, on stored
embeddings) or validate the dimensions (``config.validate_matryoshka``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor

from megatron_hybridir.config.schema import MATRYOSHKA_FULL
from megatron_hybridir.loss import ContrastiveOutput, info_nce


def resolve_dims(dims: Sequence[Union[int, str]], full: int) -> list[int]:
    """``full`` -> the embedding size; integers unchanged."""
    return [full if d == MATRYOSHKA_FULL else int(d) for d in dims]


def matryoshka_info_nce(query: Tensor, positive: Tensor, negatives: Optional[Tensor] = None, *,
                        dims: Sequence[Union[int, str]], weights: Optional[Sequence[float]] = None,
                        **info_nce_kwargs) -> ContrastiveOutput:
    """Weighted sum of :func:`info_nce` over renormalised prefixes; accuracy of the largest prefix.

    query / positive [b, d], negatives [b, k, d] or None; ``info_nce_kwargs`` go to every term.
    """
    full = query.size(-1)
    resolved = resolve_dims(dims, full)
    if any(d > full or d < 1 for d in resolved):
        raise ValueError(f"matryoshka dims {list(dims)} do not fit embeddings of size {full}")
    weights = list(weights) if weights is not None else [1.0] * len(resolved)
    total, out = None, None
    for d, w in zip(resolved, weights):
        out = info_nce(F.normalize(query[..., :d], dim=-1), F.normalize(positive[..., :d], dim=-1),
                       None if negatives is None else F.normalize(negatives[..., :d], dim=-1),
                       **info_nce_kwargs)
        total = w * out.loss if total is None else total + w * out.loss
    return ContrastiveOutput(loss=total, accuracy=out.accuracy, masked=out.masked)
