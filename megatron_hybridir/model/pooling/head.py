"""The embedding head: token states of the last pipeline stage -> one embedding per sequence.

Why it exists: a retriever is an LLM without its LM head plus a pooling rule. The rule is a
registered pooling type (``model/pooling/``: mean, last token, first token, NV-Embed latent
attention), picked by ``model.pooling``; BERT's pooler (dense + tanh, used by LaBSE), an optional
projection and L2 normalisation follow. Heads are small and replicated on every tensor-parallel
rank (their inputs are identical there), so they are plain ``torch.nn`` modules.

What it does not do: gather sequence-parallel shards (the model does that before calling the head).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from megatron_hybridir.model.pooling.base import pooling_class

if TYPE_CHECKING:
    from megatron_hybridir.config import ModelConfig


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

    def __init__(self, model: "ModelConfig", *, learnable_temperature: Optional[float] = None):
        super().__init__()
        hidden_size = model.hidden_size
        self.pooling = model.pooling
        self.normalize = model.normalize
        pool = pooling_class(model.pooling)(model)
        # Registered first, under the type's own name: parameters are created (and drawn from the
        # RNG) in the same order as before, and checkpoint keys stay head.<module_name>.*.
        self._pool_name = pool.module_name
        self.add_module(self._pool_name, pool)
        self.pooler = Pooler(hidden_size) if model.pooler else None
        self.projection = (nn.Linear(hidden_size, model.projection_dim, bias=False)
                           if model.projection_dim else None)
        self.log_scale = (nn.Parameter(torch.tensor(math.log(1.0 / learnable_temperature)))
                          if learnable_temperature else None)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """hidden [b, s, h] (final-norm output), mask [b, s] bool -> embeddings [b, d]."""
        pooled = getattr(self, self._pool_name)(hidden, mask)
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
