"""Hugging Face Llama / Mistral / Qwen2 / Qwen3 / XLM-R / BERT (LaBSE) folders -> a Megatron-Core
distributed checkpoint.

Why it exists: training starts from a pretrained LLM. Everything is checked before anything is
written — architecture, RoPE variant, TP/PP divisibility, that every tensor the tables name is in
some shard and has the expected shape (read from safetensors headers, no weights loaded). The
Megatron checkpoint is then written tensor by tensor (``streamed_save.py``): a meta-device TP=1 model
supplies Megatron's keys and shapes, and each tensor (each layer's slice of the stacked layer
tensors) is read from the safetensors shards, fused, cast and written before the next one is read,
so memory stays about two of the largest tensor, whatever the model size. Distributed checkpoints
re-shard on load, so the result starts a run at the requested TP (its vocabulary padding) and any PP.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import torch
import yaml
from tqdm import tqdm

from megatron_hybridir.checkpointing.provenance import copy_tokenizer
from megatron_hybridir.checkpointing.provenance import write as write_provenance
from megatron_hybridir.config import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_hybridir.convert import mappings, provenance
from megatron_hybridir.convert.io import atomic_folder, read_json
from megatron_hybridir.convert.mappings import ConversionError

log = logging.getLogger(__name__)


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
    values.update(arch.model_values())
    if values.get("layer_kind") == "bert":
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
    groups = model.kv_heads
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

    def dtypes(self, names) -> set[str]:
        """safetensors dtype codes ("F32", "BF16", ...) of ``names``, from the headers only."""
        from safetensors import safe_open
        by_file: dict[str, list[str]] = {}
        for name in names:
            file, full = self.files[name]
            by_file.setdefault(file, []).append(full)
        found = set()
        for file, fulls in by_file.items():
            with safe_open(self.folder / file, "pt") as f:
                found.update(f.get_slice(full).get_dtype() for full in fulls)
        return found

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


# safetensors dtype codes and config.json torch_dtype names -> our dtype names.
SAFETENSORS_DTYPES = {"F32": "fp32", "BF16": "bf16", "F16": "fp16"}
CONFIG_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def source_dtype(hf: dict, tensors: HFTensors, names: list[str], source: str) -> Optional[str]:
    """The dtype the weights are stored in (safetensors headers), as transformers'
    ``torch_dtype="auto"`` keeps them: import must not change the model unless asked. Mixed
    dtypes give fp32 (exact for each); a config.json ``torch_dtype`` that disagrees with the
    stored weights is logged (the weights win: they are what gets converted). None: stored in
    a dtype that is none of ours (the caller then needs an explicit cast)."""
    found = tensors.dtypes(names)
    if found - set(SAFETENSORS_DTYPES):
        return None
    ours = {SAFETENSORS_DTYPES[d] for d in found}
    kept = ours.pop() if len(ours) == 1 else "fp32"      # a mix: fp32 holds each of them exactly
    if ours:
        log.info("%s: weights stored in %s; keeping %s", source, sorted(ours | {kept}), kept)
    declared = hf.get("torch_dtype") or hf.get("dtype")
    if isinstance(declared, str) and CONFIG_DTYPES.get(declared) not in (None, kept):
        log.info("%s: config.json says %s but the weights are stored as %s; keeping %s",
                 source, declared, kept, kept)
    return kept


def import_hf(hf_dir: str | Path, output: str | Path, *, tensor_parallel: int = 1,
              pipeline_parallel: int = 1, dtype: Optional[str] = None, overwrite: bool = False,
              progress: bool = False, verify: bool = False, **head) -> Path:
    """Convert; ``head`` takes ModelConfig head fields (pooling, attention, projection_dim, ...).

    ``dtype`` None keeps the dtype the weights are stored in (``source_dtype``); a given one is a
    deliberate cast, logged. Both are recorded in ``provenance.json`` (``dtype``, ``source_dtype``).

    Head fields left out (or None) come from the model's sentence-transformers pipeline when it has
    one (pooling mode, normalisation), else from the defaults. ``provenance.json`` records the
    family, the HF classes, the tokenizer (copied into ``tokenizer/``) and that pipeline."""
    from megatron_hybridir.convert.streamed_save import save_streamed
    from megatron_hybridir.model.builder import build_head, build_model, padded_vocab_size
    from megatron_hybridir.runtime.distributed import ensure_runtime

    ensure_runtime()

    hf_dir, output = Path(hf_dir), Path(output)
    hf_config = read_json(hf_dir / "config.json", "the model's config")
    arch = mappings.architecture(hf_config, str(hf_dir / "config.json"))
    st_pipeline = provenance.read_sentence_transformers(hf_dir)
    head = {**provenance.head_from_sentence_transformers(
                st_pipeline, pooling_given=head.get("pooling") is not None),
            **{k: v for k, v in head.items() if v is not None}}
    model_cfg = model_config_from_hf(hf_config, str(hf_dir / "config.json"), **head)
    check_parallel(model_cfg, tensor_parallel, pipeline_parallel, str(hf_dir))
    tensors = HFTensors(hf_dir, arch)
    steps = plan(model_cfg, arch, tensors)
    stored = source_dtype(hf_config, tensors, [n for _, _, names in steps for n in names], str(hf_dir))
    if dtype is None and stored is None:
        raise ConversionError(f"{hf_dir}: weights stored as {sorted(tensors.dtypes(tensors.files))}, "
                              f"none of fp32 / bf16 / fp16; pass --dtype to choose a cast")
    if dtype is None:
        dtype = stored
        log.info("weights kept in their stored dtype, %s (--dtype casts)", dtype)
    elif dtype != stored:
        log.info("casting the weights from %s to %s (--dtype %s)", stored, dtype, dtype)
    if tensors.ignored:
        log.info("not converted (no counterpart in an embedding model): %s", tensors.ignored)
    rows = padded_vocab_size(model_cfg.vocab_size, divisible_by=model_cfg.make_vocab_size_divisible_by,
                             tp=tensor_parallel)
    # Built at TP=1 but with the target TP's vocabulary padding, so the checkpoint loads at that TP;
    # on the meta device: Megatron's keys and shapes without storage (see streamed_save.py).
    build_cfg = dataclasses.replace(model_cfg, make_vocab_size_divisible_by=rows)
    precision = PrecisionConfig(dtype=dtype)
    with torch.device("meta"):
        skeleton = build_model(build_cfg, ParallelConfig(), precision=precision)
    sources = {rule.megatron.format(i=i): (rule, names) for rule, i, names in steps}
    # Head weights an HF model does not have (a new projection, latent attention) start from
    # the usual initialisation.
    fresh = {f"head.{k}": v for k, v in build_head(model_cfg).state_dict().items()}
    heads, groups = model_cfg.num_attention_heads, model_cfg.kv_heads
    bar = tqdm(total=len(sources) + len(set(fresh) - set(sources)), desc="import", unit="tensor",
               disable=not progress)

    def materialize(name: str) -> torch.Tensor:
        bar.update()
        if name in sources:
            rule, names = sources[name]
            return mappings.fuse(rule.kind, [tensors.get(n) for n in names], heads=heads,
                                 groups=groups, rows=rows)
        if name in fresh:
            return fresh[name]
        raise ConversionError(f"{hf_dir}: nothing in the {arch.model_type} table fills {name}")

    with atomic_folder(output, overwrite, kind="converted checkpoint") as tmp:
        (tmp / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(model_cfg), sort_keys=False))
        tokenizer = copy_tokenizer(hf_dir, tmp / "tokenizer")
        record = provenance.for_import(hf_dir, hf_config, arch.name, tokenizer)
        record.update(dtype=dtype, source_dtype=stored, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)
        write_provenance(tmp, record)
        save_streamed(skeleton.sharded_state_dict(), tmp / "checkpoint", materialize)
        bar.close()
        if verify:                   # before the rename: a failed check leaves no output
            from megatron_hybridir.convert.verify import verify_import
            verify_import(hf_dir, tmp)
    log.info("wrote %s (%s, TP=%d vocabulary padding %d rows)", output, arch.model_type,
             tensor_parallel, rows)
    return output
