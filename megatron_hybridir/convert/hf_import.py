"""Hugging Face Llama / Mistral / Qwen2 / Qwen3 / XLM-R / BERT (LaBSE) folders -> a Megatron-Core
distributed checkpoint.

Why it exists: training starts from a pretrained LLM. Everything is checked before anything is
written — architecture, RoPE variant, TP/PP divisibility, that every tensor the tables name is in
some shard and has the expected shape (read from safetensors headers, no weights loaded). Tensors
are then read one at a time from the (memory-mapped) safetensors shards into a TP=1 model, whose
sharded state dict Megatron-Core writes; distributed checkpoints re-shard on load, so the result
starts a run at the requested TP (its vocabulary padding) and any PP.

What it does not do: stream the Megatron side — the TP=1 model is held once in RAM in the target
dtype (export, the direction run on 30B checkpoints, is streamed; see ``hf_export.py``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Optional

import torch
import yaml

from megatron_hybridir.config import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_hybridir.convert import mappings
from megatron_hybridir.convert.io import atomic_folder, read_json
from megatron_hybridir.convert.mappings import ConversionError

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "sentencepiece.bpe.model",
                   "vocab.txt")


def ensure_runtime(seed: int = 1234) -> None:
    """A one-process Megatron parallel state (TP=PP=1) unless the caller already made one."""
    from megatron.core import parallel_state
    from megatron_hybridir.runtime.distributed import initialize

    if not parallel_state.model_parallel_is_initialized():
        initialize(ParallelConfig(), seed=seed)


def model_config_from_hf(hf: dict, source: str, **head) -> ModelConfig:
    arch = mappings.architecture(hf, source)
    values = {}
    for field_name, keys in arch.config_keys.items():
        for key in keys:
            if hf.get(key) is not None:
                values[field_name] = hf[key]
                break
    for required in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "vocab_size"):
        if required not in values:
            raise ConversionError(f"{source}: config.json lacks {arch.config_keys[required][0]}")
    if values.get("kv_channels") == values["hidden_size"] // values["num_attention_heads"]:
        values.pop("kv_channels")
    values.update(arch.fixed)
    if values.get("architecture") == "bert":
        values.update(_bert_settings(hf, arch, source))
    else:
        values.update(mappings.rope_settings(hf, source))
        if hf.get("attention_bias") and not arch.fixed.get("add_qkv_bias"):
            raise ConversionError(f"{source}: attention_bias=true (bias on every projection) is not "
                                  f"supported; only Qwen2's QKV bias is")
    return ModelConfig(**values, **head)


def _bert_settings(hf: dict, arch: mappings.Architecture, source: str) -> dict:
    """Checks and derived fields of a BERT-style encoder config."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ConversionError(f"{source}: hidden_act={hf['hidden_act']!r}; the encoder layer uses "
                              f"exact GELU ('gelu')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{source}: position_embedding_type={hf['position_embedding_type']!r}; "
                              f"only learned absolute positions are supported")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ConversionError(f"{source}: decoder / cross-attention BERT configs are not encoders")
    # RoBERTa / XLM-R number positions from padding_idx + 1 (create_position_ids_from_input_ids).
    offset = hf.get("pad_token_id", 1) + 1 if arch.model_type == "xlm-roberta" else 0
    return {"position_offset": offset, "type_vocab_size": hf.get("type_vocab_size", 2)}


def check_parallel(model: ModelConfig, tp: int, pp: int, source: str) -> None:
    groups = model.num_query_groups or model.num_attention_heads
    if model.num_attention_heads % tp or groups % tp:
        raise ConversionError(f"{source}: tensor parallel size {tp} does not divide the "
                              f"{model.num_attention_heads} attention heads and {groups} KV heads")
    if model.num_layers % pp:
        raise ConversionError(f"{source}: pipeline parallel size {pp} does not divide the "
                              f"{model.num_layers} layers")


class HFTensors:
    """Name -> shard file for an HF folder; tensors read lazily, one at a time."""

    def __init__(self, folder: Path, arch: mappings.Architecture):
        self.folder = folder
        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = read_json(index, "safetensors index")["weight_map"]
        elif (folder / "model.safetensors").exists():
            from safetensors import safe_open
            with safe_open(folder / "model.safetensors", "pt") as f:
                weight_map = {k: "model.safetensors" for k in f.keys()}
        else:
            raise ConversionError(f"{folder}: no model.safetensors or model.safetensors.index.json "
                                  f"(PyTorch .bin checkpoints: re-save with safetensors first)")
        missing = sorted({f for f in weight_map.values() if not (folder / f).exists()})
        if missing:
            raise ConversionError(f"{folder}: shard(s) {missing} named in the index are missing")
        # Task models prefix the body ("model." in CausalLM, "roberta." / "bert." in MaskedLM);
        # their heads (LM / MLM) are not part of an embedder.
        self.files = {}
        self.ignored = []
        for name, file in weight_map.items():
            bare = next((name[len(p):] for p in arch.body_prefixes if name.startswith(p)), name)
            if arch.skipped(bare):
                self.ignored.append(name)
            else:
                self.files[bare] = (file, name)

    def shape(self, name: str) -> tuple[int, ...]:
        from safetensors import safe_open
        file, full = self.files[name]
        with safe_open(self.folder / file, "pt") as f:
            return tuple(f.get_slice(full).get_shape())

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open
        file, full = self.files[name]
        with safe_open(self.folder / file, "pt") as f:
            return f.get_tensor(full)


def plan(model: ModelConfig, arch: mappings.Architecture, tensors: HFTensors
         ) -> list[tuple[mappings.TensorRule, int, list[str]]]:
    """Every (rule, layer, HF names) to convert; checks presence and shapes first."""
    expected = arch.shapes(model)
    steps, used = [], set()
    for rule in mappings.rules_for(arch, dataclasses.asdict(model)):
        layers = range(model.num_layers) if "{i}" in rule.megatron else [None]
        for i in layers:
            names = [n.format(i=i) for n in rule.hf]
            for name in names:
                if name not in tensors.files:
                    raise ConversionError(f"{tensors.folder}: tensor {name} is missing from every shard")
                found = tensors.shape(name)
                if found != expected[name]:
                    raise ConversionError(f"{tensors.folder}: tensor {name} has shape {found}, "
                                          f"expected {expected[name]} from config.json")
            used.update(names)
            steps.append((rule, i, names))
    unused = sorted(set(tensors.files) - used)
    dropped = [n for n in unused if n.startswith(arch.optional)]
    if dropped:
        log.info("not converted (unused by this head; set model.pooler to keep the pooler): %s",
                 dropped)
        tensors.ignored.extend(dropped)
        unused = [n for n in unused if n not in dropped]
    if unused:
        raise ConversionError(f"{tensors.folder}: tensors not covered by the {arch.model_type} "
                              f"mapping table: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    return steps


def import_hf(hf_dir: str | Path, output: str | Path, *, tensor_parallel: int = 1,
              pipeline_parallel: int = 1, dtype: str = "bf16", overwrite: bool = False,
              **head) -> Path:
    """Convert; ``head`` takes ModelConfig head fields (pooling, attention, projection_dim, ...)."""
    from megatron.core import dist_checkpointing
    from megatron_hybridir.model.builder import build_model, padded_vocab_size
    ensure_runtime()

    hf_dir, output = Path(hf_dir), Path(output)
    hf_config = read_json(hf_dir / "config.json", "the model's config")
    arch = mappings.architecture(hf_config, str(hf_dir / "config.json"))
    model_cfg = model_config_from_hf(hf_config, str(hf_dir / "config.json"), **head)
    check_parallel(model_cfg, tensor_parallel, pipeline_parallel, str(hf_dir))
    tensors = HFTensors(hf_dir, arch)
    steps = plan(model_cfg, arch, tensors)
    if tensors.ignored:
        log.info("not converted (no counterpart in an embedding model): %s", tensors.ignored)
    rows = padded_vocab_size(model_cfg.vocab_size, divisible_by=model_cfg.make_vocab_size_divisible_by,
                             tp=tensor_parallel)
    # Built at TP=1 but with the target TP's vocabulary padding, so the checkpoint loads at that TP.
    build_cfg = dataclasses.replace(model_cfg, make_vocab_size_divisible_by=rows)
    model = build_model(build_cfg, ParallelConfig(), precision=PrecisionConfig(dtype=dtype))
    params = model.state_dict(keep_vars=True)
    heads, groups = model_cfg.num_attention_heads, model_cfg.num_query_groups or model_cfg.num_attention_heads
    with torch.no_grad():
        for rule, i, names in steps:
            target = params[rule.megatron.format(i=i)]
            value = mappings.fuse(rule.kind, [tensors.get(n) for n in names], heads=heads,
                                  groups=groups, rows=rows)
            target.copy_(value)
    with atomic_folder(output, overwrite) as tmp:
        (tmp / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(model_cfg), sort_keys=False))
        tokenizer_dir = tmp / "tokenizer"
        tokenizer_dir.mkdir()
        for name in TOKENIZER_FILES:
            if (hf_dir / name).exists():
                shutil.copy(hf_dir / name, tokenizer_dir / name)
        (tmp / "source.json").write_text(json.dumps({
            "hf_source": str(hf_dir.resolve()), "model_type": arch.model_type, "dtype": dtype,
            "tensor_parallel": tensor_parallel, "pipeline_parallel": pipeline_parallel,
            "tokenizer": str((output / "tokenizer").resolve())}, indent=2))
        (tmp / "checkpoint").mkdir()
        dist_checkpointing.save({"model": model.sharded_state_dict()}, str(tmp / "checkpoint"))
    log.info("wrote %s (%s, TP=%d vocabulary padding %d rows)", output, arch.model_type,
             tensor_parallel, rows)
    return output
