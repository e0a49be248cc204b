"""HF <-> Megatron-Core tensor transforms over the family registry's declarative tables: the Llama
family (Llama 2/3, Mistral, Qwen2, Qwen3) and BERT-style encoders (XLM-R, BERT / LaBSE).

Why it exists: everything architecture-specific is data in ``model/families.py`` — which HF config
keys feed which ``ModelConfig`` fields, which tensors map to which, and how (copy, the grouped QKV
fusion, the gate/up fusion). This module holds the transforms those rules name (``fuse`` /
``split``) and the RoPE reading; ``adapter.py`` expands the tables for one model and the converters
only interpret them, so adding a family means adding a registry entry, not code paths.

Megatron layouts (TP=1, local layer spec):
  linear_qkv.weight  [groups * (heads_per_group + 2) * d, h]: per KV group, its query heads, then k, v
                     (BERT: groups = heads, so q, k, v of each head in turn; the bias likewise)
  linear_fc1.weight  [2 * ffn, h]: gate rows then up rows (SwiGLU); [ffn, h] for BERT's GELU MLP
"""

from __future__ import annotations

import torch

from megatron_hybridir.model.families import FAMILIES, Family, TensorRule, family_for_hf


class ConversionError(ValueError):
    """Input cannot be converted; raised before anything is written."""


# Megatron-Core's Llama-3 RoPE scaling has these fixed parameters besides the factor.
MEGATRON_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192}


def hf_family(hf_config: dict, source: str) -> Family:
    """The registry's family of an HF ``config.json`` (``source`` names it in the error)."""
    fam = family_for_hf(hf_config)
    if fam is None:
        raise ConversionError(f"{source}: model_type {hf_config.get('model_type')!r} is not "
                              f"supported; supported: {sorted({f.model_type for f in FAMILIES.values()})}")
    return fam


def rules_for(family: Family, flags: dict) -> list[TensorRule]:
    """The family's tensor rules that apply to a model with these ModelConfig ``flags``."""
    return [r for r in family.rules if r.when is None or flags.get(r.when)]


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
