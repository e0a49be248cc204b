"""Pooling types (a registry, ``base.py``) and the embedding head that uses them (``head.py``).

Each module imported below registers its types when imported; adding a pooling type is its file
plus one import line here. The import order is the registry's order.
"""

from megatron_hybridir.model.pooling.base import (POOLINGS, PoolingType, pooling_class,
                                                  register_pooling, sentence_transformers_modes)
from megatron_hybridir.model.pooling import tokens  # noqa: F401,E402  mean, last, first
from megatron_hybridir.model.pooling import latent_attention  # noqa: F401,E402  NV-Embed

__all__ = ["POOLINGS", "PoolingType", "pooling_class", "register_pooling",
           "sentence_transformers_modes"]
