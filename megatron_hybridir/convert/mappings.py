"""Declarative HF <-> Megatron-Core tables: the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3) and
BERT-style encoders (XLM-R, BERT / LaBSE).

Why it exists: everything architecture-specific lives here as data — which HF config keys feed which
``ModelConfig`` fields, which tensors map to which, and how (copy, the grouped QKV fusion, the
gate/up fusion). ``hf_import.py`` and ``hf_export.py`` only interpret these tables, so adding a
family means adding a row, not code paths.

Megatron layouts (TP=1, local layer spec):
  linear_qkv.weight  [groups * (heads_per_group + 2) * d, h]: per KV group, its query heads, then k, v
                     (BERT: groups = heads, so q, k, v of each head in turn; the bias likewise)
  linear_fc1.weight  [2 * ffn, h]: gate rows then up rows (SwiGLU); [ffn, h] for BERT's GELU MLP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

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


ENC = "encoder.layer.{i}."
BERT_RULES = (
    TensorRule("embedding.word_embeddings.weight", ("embeddings.word_embeddings.weight",), "vocab"),
    TensorRule("embedding.position_embeddings.weight", ("embeddings.position_embeddings.weight",)),
    TensorRule("embedding.tokentype_embeddings.weight", ("embeddings.token_type_embeddings.weight",)),
    TensorRule("embedding.layernorm.weight", ("embeddings.LayerNorm.weight",)),
    TensorRule("embedding.layernorm.bias", ("embeddings.LayerNorm.bias",)),
    *(TensorRule(LAYER + f"self_attention.linear_qkv.{p}",
                 tuple(ENC + f"attention.self.{n}.{p}" for n in ("query", "key", "value")), "qkv")
      for p in ("weight", "bias")),
    *(TensorRule(LAYER + f"{ours}.{p}", (ENC + f"{theirs}.{p}",))
      for ours, theirs in (("self_attention.linear_proj", "attention.output.dense"),
                           ("post_attention_layernorm", "attention.output.LayerNorm"),
                           ("mlp.linear_fc1", "intermediate.dense"),
                           ("mlp.linear_fc2", "output.dense"),
                           ("post_mlp_layernorm", "output.LayerNorm"))
      for p in ("weight", "bias")),
    TensorRule("head.pooler.dense.weight", ("pooler.dense.weight",), when="pooler"),
    TensorRule("head.pooler.dense.bias", ("pooler.dense.bias",), when="pooler"),
)

# HF config key -> ModelConfig field (first key present wins), per layer family.
_SIZE_KEYS = {
    "num_layers": ("num_hidden_layers",),
    "hidden_size": ("hidden_size",),
    "ffn_hidden_size": ("intermediate_size",),
    "num_attention_heads": ("num_attention_heads",),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings",),
}
LLAMA_CONFIG_KEYS = {**_SIZE_KEYS, "num_query_groups": ("num_key_value_heads",),
                     "kv_channels": ("head_dim",), "layernorm_epsilon": ("rms_norm_eps",)}
BERT_CONFIG_KEYS = {**_SIZE_KEYS, "layernorm_epsilon": ("layer_norm_eps",),
                    "type_vocab_size": ("type_vocab_size",)}


def llama_shapes(model) -> dict[str, tuple[int, ...]]:
    h, heads = model.hidden_size, model.num_attention_heads
    groups = model.num_query_groups or heads
    d = model.kv_channels or h // heads
    f = model.ffn_hidden_size
    per_layer = {"input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
                 "self_attn.q_proj.weight": (heads * d, h), "self_attn.k_proj.weight": (groups * d, h),
                 "self_attn.v_proj.weight": (groups * d, h), "self_attn.o_proj.weight": (h, heads * d),
                 "mlp.gate_proj.weight": (f, h), "mlp.up_proj.weight": (f, h),
                 "mlp.down_proj.weight": (h, f),
                 "self_attn.q_proj.bias": (heads * d,), "self_attn.k_proj.bias": (groups * d,),
                 "self_attn.v_proj.bias": (groups * d,), "self_attn.q_norm.weight": (d,),
                 "self_attn.k_norm.weight": (d,)}
    shapes = {"embed_tokens.weight": (model.vocab_size, h), "norm.weight": (h,)}
    for i in range(model.num_layers):
        shapes.update({f"layers.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


def bert_shapes(model) -> dict[str, tuple[int, ...]]:
    h, f = model.hidden_size, model.ffn_hidden_size
    per_layer = {}
    for name, (rows, cols) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                               "attention.self.value": (h, h), "attention.output.dense": (h, h),
                               "intermediate.dense": (f, h), "output.dense": (h, f)}.items():
        per_layer.update({f"{name}.weight": (rows, cols), f"{name}.bias": (rows,)})
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
        per_layer.update({f"{norm}.weight": (h,), f"{norm}.bias": (h,)})
    shapes = {"embeddings.word_embeddings.weight": (model.vocab_size, h),
              "embeddings.position_embeddings.weight": (model.max_position_embeddings, h),
              "embeddings.token_type_embeddings.weight": (model.type_vocab_size, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
              "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}
    for i in range(model.num_layers):
        shapes.update({f"encoder.layer.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


@dataclass(frozen=True)
class Architecture:
    model_type: str                       # HF config "model_type"
    config_class: str                     # transformers class for export
    model_class: str                      # "architectures" entry written on export
    fixed: dict = field(default_factory=dict)   # ModelConfig values implied by the family
    rules: tuple[TensorRule, ...] = LLAMA_RULES
    config_keys: dict = field(default_factory=lambda: LLAMA_CONFIG_KEYS)
    shapes: Callable = llama_shapes       # ModelConfig -> {HF name: shape}
    body_prefixes: tuple[str, ...] = ("model.",)   # task-model wrappers around the body
    # Saved tensors that an embedding model does not use (LM / MLM heads, buffers).
    not_converted: tuple[str, ...] = ("lm_head.", "rotary_emb.inv_freq")
    # Tensors dropped unless a rule uses them (the BERT pooler, unless model.pooler).
    optional: tuple[str, ...] = ()

    def skipped(self, name: str) -> bool:
        return any(name.startswith(p) or name.endswith(p) for p in self.not_converted)


_BERT = dict(rules=BERT_RULES, config_keys=BERT_CONFIG_KEYS, shapes=bert_shapes,
             not_converted=("lm_head.", "cls.", "embeddings.position_ids", "embeddings.token_type_ids"),
             optional=("pooler.",))
ARCHITECTURES = {a.model_type: a for a in (
    Architecture("llama", "LlamaConfig", "LlamaModel"),
    Architecture("mistral", "MistralConfig", "MistralModel"),
    Architecture("qwen2", "Qwen2Config", "Qwen2Model", fixed={"add_qkv_bias": True}),
    Architecture("qwen3", "Qwen3Config", "Qwen3Model", fixed={"qk_layernorm": True}),
    # RoBERTa-style positions start after the padding index (set from pad_token_id on import).
    Architecture("xlm-roberta", "XLMRobertaConfig", "XLMRobertaModel", fixed={"architecture": "bert"},
                 body_prefixes=("roberta.",), **_BERT),
    Architecture("bert", "BertConfig", "BertModel", fixed={"architecture": "bert"},
                 body_prefixes=("bert.",), **_BERT),
)}

# Megatron-Core's Llama-3 RoPE scaling has these fixed parameters besides the factor.
MEGATRON_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192}


def architecture(hf_config: dict, source: str) -> Architecture:
    model_type = hf_config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConversionError(f"{source}: model_type {model_type!r} is not supported; supported: "
                              f"{sorted(ARCHITECTURES)})")
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
