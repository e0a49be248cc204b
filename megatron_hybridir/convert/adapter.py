"""The state-dict adapter of one model: Megatron local (TP=1) names <-> HF ``AutoModel`` names, and
the HF config an export writes.

Why it exists: import, export and the PEFT adapter writer all need "which HF tensors make this
Megatron tensor, and how" for a given model (its family's rules, the flags that switch rules on,
the layer count). The adapter expands the family's declarative rules (``model/families.py``) once
into a table keyed by concrete names — ``decoder.layers.3.self_attention.linear_qkv.weight`` ->
the three HF projections of layer 3 — so the tensor loops look names up instead of parsing them.

What it does not do: read or write files (``checkpoint_reader``, ``shard_writer``,
``streamed_save``), or decide which family an HF folder is (``mappings.hf_family``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from megatron_hybridir.config import ModelConfig
from megatron_hybridir.convert import mappings
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.families import FAMILIES, Family, family_of


@dataclass(frozen=True)
class Entry:
    """One Megatron tensor and the HF tensors it is made of."""
    megatron: str                 # local TP=1 name, layer index filled in
    hf: tuple[str, ...]           # HF AutoModel names (no task-model prefix)
    kind: str                     # copy | qkv | glu | vocab (mappings.fuse / split)
    layer: Optional[int]          # None for the globals
    order: int                    # the rule's position in the family table (export writes in it)


def export_family(model: ModelConfig, name: Optional[str] = None) -> Family:
    """The family to export as: ``name`` when given, else the family the model records
    (``model.family``, set on import and by presets); models built from scratch take their layer
    kind's base family."""
    if name:
        family = FAMILIES.get(name)
        if family is None:
            raise ConversionError(f"--family {name!r}: expected one of {sorted(FAMILIES)}")
        if model.family and name != model.family:
            raise ConversionError(f"--family {name!r}: the checkpoint records "
                                  f"model.family={model.family!r}")
    else:
        family = family_of(model)
    if model.layer_kind != family.layers:
        raise ConversionError(f"model.layer_kind={model.layer_kind} cannot be expressed as "
                              f"{family.model_type}")
    for flag in ("qk_layernorm", "add_qkv_bias"):
        if getattr(model, flag) != bool(family.fixed.get(flag)):
            raise ConversionError(f"model.{flag}={getattr(model, flag)} cannot be expressed as "
                                  f"{family.model_type}")
    return family


class StateDictAdapter:
    """Megatron <-> HF tensors of ``model`` as ``family``. ``megatron_rows``: the Megatron embedding
    table's row count (import pads the HF table up to it); export cuts to ``model.vocab_size``."""

    def __init__(self, model: ModelConfig, family: Family, *, megatron_rows: Optional[int] = None):
        self.family = family
        self.heads, self.groups = model.num_attention_heads, model.kv_heads
        self.hf_rows, self.megatron_rows = model.vocab_size, megatron_rows
        self.entries: dict[str, Entry] = {}
        for order, rule in enumerate(mappings.rules_for(family, dataclasses.asdict(model))):
            layers = range(model.num_layers) if "{i}" in rule.megatron else [None]
            for i in layers:
                name = rule.megatron.format(i=i)
                self.entries[name] = Entry(name, tuple(n.format(i=i) for n in rule.hf), rule.kind,
                                           i, order)

    def to_hf(self, tensors: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """{HF name: tensor} for each Megatron tensor in ``tensors`` that has an HF counterpart,
        one dict per Megatron tensor, in the family table's order (tensors without one — the
        projection head, adapters — are skipped)."""
        found = sorted((self.entries[name] for name in tensors if name in self.entries),
                       key=lambda entry: entry.order)
        for entry in found:
            parts = mappings.split(entry.kind, tensors[entry.megatron], heads=self.heads,
                                   groups=self.groups, rows=self.hf_rows)
            yield dict(zip(entry.hf, parts))

    def split(self, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """The HF tensors of the Megatron tensor ``name`` (also for a LoRA B matrix of a fused
        linear, whose rows split like the weight's)."""
        entry = self.entries[name]
        return dict(zip(entry.hf, mappings.split(entry.kind, tensor, heads=self.heads,
                                                 groups=self.groups, rows=self.hf_rows)))

    def to_megatron(self, name: str, read_hf: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """The Megatron tensor ``name`` from its HF tensors (``read_hf(hf name)``)."""
        entry = self.entries[name]
        return mappings.fuse(entry.kind, [read_hf(n) for n in entry.hf], heads=self.heads,
                             groups=self.groups, rows=self.megatron_rows or self.hf_rows)


def hf_config(model: ModelConfig, family: Family):
    """The transformers config object an export of ``model`` as ``family`` writes."""
    import transformers

    if model.layer_kind == "bert":
        return _bert_hf_config(model, family)
    rope = {"rope_type": "default", "rope_theta": model.rotary_base}
    if model.rope_scaling_factor:
        rope.update(rope_type="llama3", factor=model.rope_scaling_factor, **mappings.MEGATRON_LLAMA3_ROPE)
    kwargs = dict(vocab_size=model.vocab_size, hidden_size=model.hidden_size,
                  intermediate_size=model.ffn_hidden_size, num_hidden_layers=model.num_layers,
                  num_attention_heads=model.num_attention_heads,
                  num_key_value_heads=model.kv_heads, head_dim=model.head_dim,
                  max_position_embeddings=model.max_position_embeddings,
                  rms_norm_eps=model.layernorm_epsilon, rope_parameters=rope,
                  tie_word_embeddings=False, architectures=[family.model_class])
    config = getattr(transformers, family.config_class)(**kwargs)
    config.is_causal = model.attention == "causal"
    return config


def _bert_hf_config(model: ModelConfig, family: Family):
    import transformers

    kwargs = dict(vocab_size=model.vocab_size, hidden_size=model.hidden_size,
                  num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
                  intermediate_size=model.ffn_hidden_size, hidden_act="gelu",
                  max_position_embeddings=model.max_position_embeddings,
                  type_vocab_size=model.type_vocab_size, layer_norm_eps=model.layernorm_epsilon,
                  hidden_dropout_prob=model.hidden_dropout,
                  attention_probs_dropout_prob=model.attention_dropout,
                  architectures=[family.model_class])
    if model.position_offset:
        kwargs["pad_token_id"] = model.position_offset - 1   # RoBERTa: positions from pad + 1
    return getattr(transformers, family.config_class)(**kwargs)
