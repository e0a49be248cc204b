"""Parameter-free poolings that read token states: mean (E5, GTE), last token (E5-Mistral, SFR),
first token (BERT's CLS). Each equals a sentence-transformers ``Pooling`` mode, so a model using
one exports to a plain sentence-transformers pipeline.

What it does not do: padding on the left — the collator right-pads, and ``last_token`` relies on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from megatron_hybridir.model.pooling.base import PoolingType, register_pooling


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens. hidden [b, s, h], mask [b, s] bool (True = real token) -> [b, h]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [b, s, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def last_token(hidden: Tensor, mask: Tensor) -> Tensor:
    """State of the last real token, right padding assumed. [b, s, h] -> [b, h]."""
    lengths = mask.long().sum(dim=1)  # [b]
    index = (lengths - 1).clamp_min(0)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]


@register_pooling
class MeanPooling(PoolingType):
    name = "mean"
    st_mode = "pooling_mode_mean_tokens"

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(hidden, mask)


@register_pooling
class LastTokenPooling(PoolingType):
    name = "last"
    st_mode = "pooling_mode_lasttoken"

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return last_token(hidden, mask)


@register_pooling
class FirstTokenPooling(PoolingType):
    name = "first"
    st_mode = "pooling_mode_cls_token"

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return hidden[:, 0]
