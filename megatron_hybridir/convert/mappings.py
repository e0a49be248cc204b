"""Declarative HF <-> Megatron-Core tables for the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3).

Why it exists: everything architecture-specific lives here as data — which HF config keys feed which
``ModelConfig`` fields, which tensors map to which, and how (copy, the grouped QKV fusion, the
gate/up fusion). ``hf_import.py`` and ``hf_export.py`` only interpret these tables, so adding a
family means adding a row, not code paths.

Megatron layouts (TP=1, local layer spec):
  linear_qkv.weight  [groups * (heads_per_group + 2) * d, h]: per KV group, its query heads, then k, v
  linear_fc1.weight  [2 * ffn, h]: gate rows then up rows (SwiGLU)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


class ConversionError(ValueError):
    """Input cannot be converted; raised before anything is written."""


@dataclass(frozen=True)
class TensorRule:
    megatron: str                # local (TP=1) state-dict name, "{i}" = layer index
    hf: tuple[str, ...]          # HF AutoModel names (no "model." prefix)
    kind: str = "copy"           # copy | qkv | glu | vocab
    when: Optional[str] = None   # ModelConfig flag that must be true for the rule to apply


LAYER = "decoder.layers.{i}."
HF_LAYER = "layers.{i}."

LLAMA_RULES = (
    TensorRule("embedding.word_embeddings.weight", ("embed_tokens.weight",), "vocab"),
    TensorRule("decoder.final_layernorm.weight", ("norm.weight",)),
    TensorRule(LAYER + "input_layernorm.weight", (HF_LAYER + "input_layernorm.weight",)),
    TensorRule(LAYER + "self_attention.linear_qkv.weight",
               tuple(HF_LAYER + f"self_attn.{p}_proj.weight" for p in "qkv"), "qkv"),
    TensorRule(LAYER + "self_attention.linear_qkv.bias",
               tuple(HF_LAYER + f"self_attn.{p}_proj.bias" for p in "qkv"), "qkv", when="add_qkv_bias"),
    TensorRule(LAYER + "self_attention.q_layernorm.weight", (HF_LAYER + "self_attn.q_norm.weight",),
               when="qk_layernorm"),
    TensorRule(LAYER + "self_attention.k_layernorm.weight", (HF_LAYER + "self_attn.k_norm.weight",),
               when="qk_layernorm"),
    TensorRule(LAYER + "self_attention.linear_proj.weight", (HF_LAYER + "self_attn.o_proj.weight",)),
    TensorRule(LAYER + "pre_mlp_layernorm.weight", (HF_LAYER + "post_attention_layernorm.weight",)),
    TensorRule(LAYER + "mlp.linear_fc1.weight",
               (HF_LAYER + "mlp.gate_proj.weight", HF_LAYER + "mlp.up_proj.weight"), "glu"),
    TensorRule(LAYER + "mlp.linear_fc2.weight", (HF_LAYER + "mlp.down_proj.weight",)),
)


@dataclass(frozen=True)
class Architecture:
    model_type: str                       # HF config "model_type"
    config_class: str                     # transformers class for export
    model_class: str                      # "architectures" entry written on export
    fixed: dict = field(default_factory=dict)   # ModelConfig values implied by the family
    rules: tuple[TensorRule, ...] = LLAMA_RULES


ARCHITECTURES = {a.model_type: a for a in (
    Architecture("llama", "LlamaConfig", "LlamaModel"),
    Architecture("mistral", "MistralConfig", "MistralModel"),
    Architecture("qwen2", "Qwen2Config", "Qwen2Model", fixed={"add_qkv_bias": True}),
    Architecture("qwen3", "Qwen3Config", "Qwen3Model", fixed={"qk_layernorm": True}),
)}

# HF config key -> ModelConfig field (first key present wins).
CONFIG_KEYS = {
    "num_layers": ("num_hidden_layers",),
    "hidden_size": ("hidden_size",),
    "ffn_hidden_size": ("intermediate_size",),
    "num_attention_heads": ("num_attention_heads",),
    "num_query_groups": ("num_key_value_heads",),
    "kv_channels": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings",),
    "layernorm_epsilon": ("rms_norm_eps",),
}

# Megatron-Core's Llama-3 RoPE scaling has these fixed parameters besides the factor.
MEGATRON_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192}


def architecture(hf_config: dict, source: str) -> Architecture:
    model_type = hf_config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConversionError(f"{source}: model_type {model_type!r} is not supported; supported: "
                              f"{sorted(ARCHITECTURES)} (XLM-R / BERT encoders: see issue 8)")
    return ARCHITECTURES[model_type]


def rules_for(arch: Architecture, flags: dict) -> list[TensorRule]:
    return [r for r in arch.rules if r.when is None or flags.get(r.when)]


def rope_settings(hf_config: dict, source: str) -> dict:
    """rotary_base and rope_scaling_factor from either config style (transformers 4 or 5)."""
    params = dict(hf_config.get("rope_parameters") or {})
    scaling = hf_config.get("rope_scaling") or (params if params.get("rope_type", "default") != "default"
                                                else None)
    theta = hf_config.get("rope_theta", params.get("rope_theta", 10000.0))
    out = {"rotary_base": float(theta), "rope_scaling_factor": None}
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "llama3":
            raise ConversionError(f"{source}: RoPE scaling {kind!r} is not supported (Llama-3 "
                                  f"scaling only)")
        for key, value in MEGATRON_LLAMA3_ROPE.items():
            if float(scaling.get(key, value)) != value:
                raise ConversionError(f"{source}: rope_scaling.{key}={scaling[key]} differs from "
                                      f"Megatron-Core's fixed {value}")
        out["rope_scaling_factor"] = float(scaling["factor"])
    return out


# --- tensor transforms (HF tensors -> Megatron tensor, and back) -----------------------------


def fuse(kind: str, tensors: list[torch.Tensor], *, heads: int, groups: int, rows: int = 0
         ) -> torch.Tensor:
    if kind == "copy":
        return tensors[0]
    if kind == "vocab":                       # pad rows to Megatron's padded vocabulary
        table = tensors[0]
        if rows > table.shape[0]:
            table = torch.cat([table, table.new_zeros(rows - table.shape[0], *table.shape[1:])])
        return table
    if kind == "glu":
        return torch.cat(tensors, dim=0)
    if kind == "qkv":
        q, k, v = tensors
        d = k.shape[0] // groups
        rest = q.shape[1:]
        q = q.reshape(groups, heads // groups, d, *rest)
        return torch.cat([q, k.reshape(groups, 1, d, *rest), v.reshape(groups, 1, d, *rest)],
                         dim=1).reshape(-1, *rest)
    raise ValueError(kind)


def split(kind: str, tensor: torch.Tensor, *, heads: int, groups: int, rows: int = 0
          ) -> list[torch.Tensor]:
    if kind == "copy":
        return [tensor]
    if kind == "vocab":
        return [tensor[:rows]]
    if kind == "glu":
        return list(tensor.chunk(2, dim=0))
    if kind == "qkv":
        per = heads // groups
        rest = tensor.shape[1:]
        d = tensor.shape[0] // (groups * (per + 2))
        grouped = tensor.reshape(groups, per + 2, d, *rest)
        return [grouped[:, :per].reshape(heads * d, *rest), grouped[:, per].reshape(groups * d, *rest),
                grouped[:, per + 1].reshape(groups * d, *rest)]
    raise ValueError(kind)
