"""Layer specs for the embedding model: Megatron-Core's GPT layer with a non-causal mask (LLMs), or
the post-LayerNorm encoder layer of ``encoder_layers`` (BERT-style encoders).

Why it exists: a bidirectional LLM embedder is not a fork of the GPT layer, only a different
``attn_mask_type`` in its ``ModuleSpec`` (Megatron-Core's own pattern for BERT). This module picks
Transformer Engine layers when they are importable and requested, and the local (pure PyTorch)
layers otherwise, logging the fallback once; it also says whether Megatron's fused softmax kernels
are importable.

Mask conventions (see :func:`mask_layout`): every spec receives an explicit boolean mask where True
means "do not attend". Bidirectional uses a key-padding mask ``[b, 1, 1, s]``. Causal uses a full
``[b, 1, s, s]`` mask with the local layers (which only build a causal mask when none is given), and
a key-padding mask with TE's ``padding_causal`` type (TE adds the causal part itself).
"""

from __future__ import annotations

import copy
import functools
import importlib
import logging
from typing import Optional

import torch

from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_hybridir.model.encoder_layers import post_ln_layer_spec
from megatron_hybridir.model.packing import SegmentAttention

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or a broken CUDA install raising OSError/RuntimeError
        return False
    return True


def transformer_engine_available() -> bool:
    return _importable("transformer_engine.pytorch")


def fused_softmax_kernels_available() -> bool:
    """Megatron's fused masked-softmax extension (built by Apex / the NGC containers); without it,
    asking Megatron for the fusion fails at the first attention call instead of falling back."""
    return _importable("scaled_masked_softmax_cuda")


def resolve_use_te(requested: bool) -> bool:
    """True when TE layers will be used; logs one line when a request falls back."""
    if requested and not transformer_engine_available():
        logger.warning("Transformer Engine is not importable: using the local layer spec "
                       "(torch norms, no fp8)")
        return False
    return requested


def mask_layout(*, causal: bool, use_te: bool) -> str:
    """``key_padding`` ([b,1,1,s]) or ``full`` ([b,1,s,s]) — which mask the model must build."""
    return "full" if (causal and not use_te) else "key_padding"


class RMSNorm(torch.nn.RMSNorm):
    """torch RMSNorm with Megatron's norm constructor and sequence-parallel support.

    Megatron's own torch fallback (``WrappedTorchNorm``) refuses sequence parallelism. With SP each
    TP rank normalises a different slice of the sequence, so the weight's gradient is partial;
    tagging it ``sequence_parallel`` makes ``finalize_model_grads`` sum it over TP, exactly as the
    fused/TE norms do.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_unused):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
        self.weight.sequence_parallel = config.sequence_parallel


def embedding_block_spec(config: TransformerConfig, *, causal: bool, qk_layernorm: bool,
                         use_te: bool, vp_stage: Optional[int] = None,
                         post_norm: bool = False) -> TransformerBlockSubmodules:
    """Block spec for this pipeline stage (or virtual stage): its layers and the final norm.

    ``post_norm``: BERT-style post-LayerNorm layers (``encoder_layers``), which end in a norm of
    their own, so the block has no final norm.
    """
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    if post_norm:
        gpt = (get_gpt_layer_with_transformer_engine_spec() if use_te
               else get_gpt_layer_local_spec(normalization="LayerNorm"))
        layer = post_ln_layer_spec(gpt, use_te=use_te)
        if not use_te:
            layer.submodules.self_attention.submodules.core_attention = ModuleSpec(
                module=SegmentAttention, params={"causal": False})
        layer.submodules.self_attention.params = {
            **layer.submodules.self_attention.params, "attn_mask_type": AttnMaskType.padding}
        return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=None)
    if use_te:
        layer = get_gpt_layer_with_transformer_engine_spec(qk_layernorm=qk_layernorm)
        mask_type = AttnMaskType.padding_causal if causal else AttnMaskType.padding
        from megatron.core.extensions.transformer_engine import TENorm as norm
    else:
        layer = copy.deepcopy(
            get_gpt_layer_local_spec(qk_layernorm=qk_layernorm, normalization="RMSNorm"))
        mask_type = AttnMaskType.arbitrary if causal else AttnMaskType.padding
        norm = RMSNorm
        layer.submodules.input_layernorm = RMSNorm
        layer.submodules.pre_mlp_layernorm = RMSNorm
        if qk_layernorm:
            layer.submodules.self_attention.submodules.q_layernorm = RMSNorm
            layer.submodules.self_attention.submodules.k_layernorm = RMSNorm
        # Megatron's local attention, plus packed streams one row at a time (model/packing.py).
        layer.submodules.self_attention.submodules.core_attention = ModuleSpec(
            module=SegmentAttention, params={"causal": causal})
    layer = copy.deepcopy(layer)
    attention: ModuleSpec = layer.submodules.self_attention
    attention.params = {**attention.params, "attn_mask_type": mask_type}
    # The final norm is named explicitly: the block's default depends on which of TE / apex is
    # importable, and an embedder must keep the LLM's RMSNorm before pooling.
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=norm)
