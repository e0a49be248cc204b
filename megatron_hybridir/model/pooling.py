"""Pooling heads: token states of the last pipeline stage -> one embedding per sequence.

Why it exists: a retriever is an LLM without its LM head plus a pooling rule. The rules here are the
ones used by current embedders: mean over real tokens (E5, GTE), last real token (E5-Mistral, SFR),
first token (BERT CLS) and NV-Embed's latent attention. BERT's pooler (dense + tanh, used by LaBSE),
an optional projection and L2 normalisation follow. Heads are small and replicated on every
tensor-parallel rank (their inputs are identical there), so they are plain ``torch.nn`` modules.

What it does not do: gather sequence-parallel shards (the model does that before calling the head).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens. hidden [b, s, h], mask [b, s] bool (True = real token) -> [b, h]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [b, s, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def last_token(hidden: Tensor, mask: Tensor) -> Tensor:
    """State of the last real token, right padding assumed. [b, s, h] -> [b, h]."""
    lengths = mask.long().sum(dim=1)  # [b]
    index = (lengths - 1).clamp_min(0)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]


class LatentAttentionPooling(nn.Module):
    """NV-Embed latent attention: tokens attend to a trainable latent dictionary, then an MLP.

    The token states are the queries and the latents the keys and values (Lee et al., 2024);
    residual connections follow NV-Embed's released model; the result is mean-pooled over real
    tokens.
    """

    def __init__(self, hidden_size: int, *, num_latents: int, num_heads: int,
                 init_std: float = 0.02):
        super().__init__()
        self.num_heads = num_heads
        self.latents = nn.Parameter(torch.randn(num_latents, hidden_size) * init_std)
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.kv_proj = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(),
                                 nn.Linear(4 * hidden_size, hidden_size))

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


class Pooler(nn.Module):
    """BERT's pooler: dense (hidden -> hidden, with bias) then tanh."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, pooled: Tensor) -> Tensor:
        return torch.tanh(self.dense(pooled))


class EmbeddingHead(nn.Module):
    """Pooling, optional BERT pooler, optional projection, optional L2 normalisation, and an
    optional learnable scale.

    The learnable inverse temperature lives here (not in the loss) so that it is a model parameter:
    it is synchronised by data-parallel gradient reduction and saved with the model.
    """

    def __init__(self, hidden_size: int, *, pooling: str, projection_dim: Optional[int],
                 normalize: bool, latent_num_latents: int = 512, latent_num_heads: int = 8,
                 learnable_temperature: Optional[float] = None, init_std: float = 0.02,
                 pooler: bool = False):
        super().__init__()
        self.pooling = pooling
        self.normalize = normalize
        self.latent = (LatentAttentionPooling(hidden_size, num_latents=latent_num_latents,
                                              num_heads=latent_num_heads, init_std=init_std)
                       if pooling == "latent_attention" else None)
        self.pooler = Pooler(hidden_size) if pooler else None
        self.projection = (nn.Linear(hidden_size, projection_dim, bias=False)
                           if projection_dim else None)
        self.log_scale = (nn.Parameter(torch.tensor(math.log(1.0 / learnable_temperature)))
                          if learnable_temperature else None)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """hidden [b, s, h] (final-norm output), mask [b, s] bool -> embeddings [b, d]."""
        if self.pooling == "mean":
            pooled = masked_mean(hidden, mask)
        elif self.pooling == "last":
            pooled = last_token(hidden, mask)
        elif self.pooling == "first":
            pooled = hidden[:, 0]
        elif self.pooling == "latent_attention":
            pooled = self.latent(hidden, mask)
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}")
        if self.pooler is not None:
            pooled = self.pooler(pooled)
        if self.projection is not None:
            pooled = self.projection(pooled)
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled

    def logit_scale(self) -> Optional[Tensor]:
        """exp(log 1/tau), clamped like CLIP's to keep training stable; None when tau is fixed."""
        if self.log_scale is None:
            return None
        return self.log_scale.clamp(max=math.log(100.0)).exp()
