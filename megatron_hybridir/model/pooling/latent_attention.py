"""NV-Embed's latent-attention pooling (Lee et al., 2024): tokens attend to a trainable latent
dictionary, then an MLP, then the mean over real tokens.

It has no sentence-transformers counterpart (``st_mode`` None): export refuses such a model and
import never chooses it. Its parameters are stored under ``head.latent.*``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from megatron_hybridir.model.pooling.base import PoolingType, register_pooling
from megatron_hybridir.model.pooling.tokens import masked_mean


@register_pooling
class LatentAttentionPooling(PoolingType):
    """The token states are the queries and the latents the keys and values; residual connections
    follow NV-Embed's released model."""

    name = "latent_attention"
    st_mode = None
    module_name = "latent"

    def __init__(self, model):
        super().__init__(model)
        h = model.hidden_size
        self.num_heads = model.latent_num_heads
        self.latents = nn.Parameter(torch.randn(model.latent_num_latents, h) * model.init_method_std)
        self.q_proj = nn.Linear(h, h, bias=False)
        self.kv_proj = nn.Linear(h, 2 * h, bias=False)
        self.out_proj = nn.Linear(h, h, bias=False)
        self.mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(), nn.Linear(4 * h, h))

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        b, s, h = hidden.shape
        d = h // self.num_heads
        q = self.q_proj(hidden).view(b, s, self.num_heads, d).transpose(1, 2)  # [b, n, s, d]
        k, v = self.kv_proj(self.latents).chunk(2, dim=-1)  # [r, h] each
        k = k.view(-1, self.num_heads, d).transpose(0, 1)  # [n, r, d]
        v = v.view(-1, self.num_heads, d).transpose(0, 1)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)  # [b, n, s, r]
        out = (attn @ v).transpose(1, 2).reshape(b, s, h)
        hidden = hidden + self.out_proj(out)
        hidden = hidden + self.mlp(hidden)
        return masked_mean(hidden, mask)

    @classmethod
    def parameter_count(cls, model) -> int:
        h = model.hidden_size
        # latents, q + kv + out projections (no bias), MLP h -> 4h -> h with biases
        return model.latent_num_latents * h + 4 * h * h + (h * 4 * h + 4 * h) + (4 * h * h + h)

    @classmethod
    def forward_flops(cls, model, seq_len: int) -> float:
        """Per sequence: q and out projections 2·s·h·h each, scores and weighted values
        2·s·r·h each, MLP 2·s·h·4h·2. The latents' key/value projection (2·r·h·2h) runs once per
        micro-batch, not per sequence, and is left out like the other per-batch work."""
        h, s, r = model.hidden_size, seq_len, model.latent_num_latents
        return float(2 * 2 * s * h * h + 2 * 2 * s * r * h + 2 * 2 * s * h * 4 * h)
