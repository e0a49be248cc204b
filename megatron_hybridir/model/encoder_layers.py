"""BERT-style (post-LayerNorm) encoder pieces on Megatron-Core: layer, block spec, embedding.

Why it exists: hybrid batch training was introduced on XLM-R and LaBSE, BERT-style encoders, and
Megatron-Core only ships pre-norm layers (its BERT is the pre-LN Megatron-BERT variant). A post-LN
layer computes

    h = LN_1(x + Attention(x))          out = LN_2(h + MLP(h))

which is Megatron-Core's ``TransformerLayer`` with identity pre-norms and a LayerNorm after each
residual add. Subclassing it keeps everything parallel from Megatron-Core (column / row parallel
linears, the attention core, sequence parallelism, recomputation, sharded checkpoints); only the two
post-norms are added. The embedding follows BERT / RoBERTa: word + learned absolute position +
token type, then LayerNorm, then dropout (Megatron's embedding drops out before any norm, so its
dropout is moved after ours).

What it does not do: choose positions or token types (the model passes them) or know HF names
(``convert/mappings.py`` maps them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Optional, Union

import torch
from megatron.core import tensor_parallel
from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules
from torch import Tensor


class LayerNorm(torch.nn.LayerNorm):
    """torch LayerNorm with Megatron's norm constructor and sequence-parallel gradient tagging
    (see ``layer_specs.RMSNorm`` for why the tag is needed)."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_unused):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
        self.weight.sequence_parallel = config.sequence_parallel
        self.bias.sequence_parallel = config.sequence_parallel


@dataclass
class PostLNLayerSubmodules(TransformerLayerSubmodules):
    """Megatron's layer submodules plus the two norms that follow the residual adds."""

    post_attention_layernorm: Union[ModuleSpec, type] = IdentityOp
    post_mlp_layernorm: Union[ModuleSpec, type] = IdentityOp


class PostLNTransformerLayer(TransformerLayer):
    """Megatron-Core's transformer layer with BERT's post-LayerNorm placement."""

    def __init__(self, config: TransformerConfig, submodules: PostLNLayerSubmodules, *args, **kwargs):
        super().__init__(config, submodules, *args, **kwargs)
        norm = dict(config=self.config, hidden_size=self.config.hidden_size,
                    eps=self.config.layernorm_epsilon)
        self.post_attention_layernorm = build_module(submodules.post_attention_layernorm, **norm)
        self.post_mlp_layernorm = build_module(submodules.post_mlp_layernorm, **norm)

    def _forward_attention(self, *args, **kwargs):
        hidden, context = super()._forward_attention(*args, **kwargs)
        return self.post_attention_layernorm(hidden), context

    def _forward_mlp(self, hidden_states, inference_context=None, padding_mask=None):
        # The residual of the MLP add is the normalised h, as in BERT: the parent takes its
        # input as the residual, and its pre-MLP norm is the identity here.
        out = super()._forward_mlp(hidden_states, inference_context, padding_mask=padding_mask)
        return self.post_mlp_layernorm(out)


def post_ln_layer_spec(gpt_layer: ModuleSpec, *, use_te: bool) -> ModuleSpec:
    """Turn a Megatron GPT layer spec (local or TE) into the post-LN encoder layer spec."""
    layer = copy.deepcopy(gpt_layer)
    sub = layer.submodules
    if use_te:
        from megatron.core.extensions.transformer_engine import TEColumnParallelLinear, TENorm

        # TE's fused "LayerNorm + linear" would normalise the input: post-LN has no input norm.
        sub.self_attention.submodules.linear_qkv = TEColumnParallelLinear
        sub.mlp.submodules.linear_fc1 = TEColumnParallelLinear
        norm = TENorm
    else:
        norm = LayerNorm
    values = {f.name: getattr(sub, f.name) for f in fields(TransformerLayerSubmodules)}
    values.update(input_layernorm=IdentityOp, pre_mlp_layernorm=IdentityOp)
    layer.module = PostLNTransformerLayer
    layer.submodules = PostLNLayerSubmodules(**values, post_attention_layernorm=norm,
                                             post_mlp_layernorm=norm)
    return layer


class EncoderEmbedding(LanguageModelEmbedding):
    """BERT / RoBERTa embedding: word + learned position + token type, LayerNorm, dropout."""

    def __init__(self, config: TransformerConfig, *, vocab_size: int, max_sequence_length: int,
                 num_tokentypes: int):
        super().__init__(config=config, vocab_size=vocab_size,
                         max_sequence_length=max_sequence_length,
                         position_embedding_type="learned_absolute", num_tokentypes=num_tokentypes)
        self.dropout_after_norm = self.embedding_dropout
        self.embedding_dropout = torch.nn.Identity()
        self.layernorm = LayerNorm(config, config.hidden_size, eps=config.layernorm_epsilon)

    def forward(self, input_ids: Tensor, position_ids: Tensor,
                tokentype_ids: Optional[Tensor] = None) -> Tensor:
        hidden = self.layernorm(super().forward(input_ids, position_ids, tokentype_ids))
        if self.config.sequence_parallel:
            # Each TP rank holds a different slice of the sequence: its dropout mask must differ.
            with tensor_parallel.get_cuda_rng_tracker().fork():
                return self.dropout_after_norm(hidden)
        return self.dropout_after_norm(hidden)
