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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from tqdm import tqdm

from megatron_hybridir.checkpointing.provenance import copy_tokenizer
from megatron_hybridir.checkpointing.provenance import write as write_provenance
from megatron_hybridir.config import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_hybridir.convert import mappings, provenance
from megatron_hybridir.convert import verify as checks
from megatron_hybridir.convert.adapter import StateDictAdapter
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.io import atomic_folder, read_json
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.convert.streamed_save import save_streamed
from megatron_hybridir.model.families import Family

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportHead:
    """The embedding head an import builds on the HF trunk: ``ModelConfig`` fields of the same
    names. None: not chosen, so the model's sentence-transformers pipeline decides (pooling mode,
    normalisation) when it has one, else ``ModelConfig``'s default."""

    attention: Optional[str] = None
    """``bidirectional`` or ``causal`` (``ModelConfig.attention``)."""
    pooling: Optional[str] = None
    """mean, last, first or latent_attention (``ModelConfig.pooling``)."""
    latent_num_latents: Optional[int] = None
    """Latent-attention pooling: size of the latent dictionary."""
    latent_num_heads: Optional[int] = None
    """Latent-attention pooling: attention heads."""
    pooler: Optional[bool] = None
    """BERT's pooler (dense + tanh) after pooling (LaBSE)."""
    projection_dim: Optional[int] = None
    """A linear projection of the pooled vector to this dimension."""
    normalize: Optional[bool] = None
    """L2-normalise embeddings."""

    def chosen(self) -> dict:
        """The fields set (not None), as ``ModelConfig`` keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


def model_config_from_hf(hf: dict, source: str, **head) -> ModelConfig:
    family = mappings.hf_family(hf, source)
    values = {}
    for field_name, keys in family.config_keys.items():
        for key in keys:
            if hf.get(key) is not None:
                values[field_name] = hf[key]
                break
    for required in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "vocab_size"):
        if required not in values:
            raise ConversionError(f"{source}: config.json lacks {family.config_keys[required][0]}")
    if values.get("kv_channels") == values["hidden_size"] // values["num_attention_heads"]:
        values.pop("kv_channels")
    values.update(family.model_values())
    if values.get("layer_kind") == "bert":
        values.update(_bert_settings(hf, family, source))
    else:
        values.update(mappings.rope_settings(hf, source))
        if hf.get("attention_bias") and not family.fixed.get("add_qkv_bias"):
            raise ConversionError(f"{source}: attention_bias=true (bias on every projection) is not "
                                  f"supported; only Qwen2's QKV bias is")
    return ModelConfig(**values, **head)


def _bert_settings(hf: dict, family: Family, source: str) -> dict:
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
    offset = hf.get("pad_token_id", 1) + 1 if family.model_type == "xlm-roberta" else 0
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

    def __init__(self, folder: Path, family: Family):
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
            bare = next((name[len(p):] for p in family.body_prefixes if name.startswith(p)), name)
            if family.skipped(bare):
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


def plan(model: ModelConfig, adapter: StateDictAdapter, tensors: HFTensors) -> list[str]:
    """The HF tensors to convert (every one the adapter names, in its order); checks presence and
    shapes first, and that nothing in the folder is left unconverted unless the family allows it."""
    family = adapter.family
    expected = family.shapes(model)
    used = []
    for entry in adapter.entries.values():
        for name in entry.hf:
            if name not in tensors.files:
                raise ConversionError(f"{tensors.folder}: tensor {name} is missing from every shard")
            found = tensors.shape(name)
            if found != expected[name]:
                raise ConversionError(f"{tensors.folder}: tensor {name} has shape {found}, "
                                      f"expected {expected[name]} from config.json")
        used.extend(entry.hf)
    unused = sorted(set(tensors.files) - set(used))
    dropped = [n for n in unused if n.startswith(family.optional)]
    if dropped:
        log.info("not converted (unused by this head; set model.pooler to keep the pooler): %s",
                 dropped)
        tensors.ignored.extend(dropped)
        unused = [n for n in unused if n not in dropped]
    if unused:
        raise ConversionError(f"{tensors.folder}: tensors not covered by the {family.model_type} "
                              f"mapping table: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    return used


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


def import_dtype(hf_dir: Path, hf_config: dict, tensors: HFTensors, names: list[str],
                 dtype: Optional[str]) -> tuple[str, Optional[str]]:
    """(dtype to write, dtype stored): ``dtype`` None keeps the stored one (``source_dtype``)."""
    stored = source_dtype(hf_config, tensors, names, str(hf_dir))
    if dtype is None and stored is None:
        raise ConversionError(f"{hf_dir}: weights stored as {sorted(tensors.dtypes(tensors.files))}, "
                              f"none of fp32 / bf16 / fp16; pass --dtype to choose a cast")
    if dtype is None:
        dtype = stored
        log.info("weights kept in their stored dtype, %s (--dtype casts)", dtype)
    elif dtype != stored:
        log.info("casting the weights from %s to %s (--dtype %s)", stored, dtype, dtype)
    return dtype, stored


def materializer(adapter: StateDictAdapter, tensors: HFTensors, model: ModelConfig, bar: tqdm
                 ) -> Callable[[str], torch.Tensor]:
    """``save_streamed``'s ``materialize``: each Megatron tensor fused from its HF tensors; head
    weights an HF model does not have (a new projection, latent attention) start from the usual
    initialisation."""
    from megatron_hybridir.model.builder import build_head

    fresh = {f"head.{k}": v for k, v in build_head(model).state_dict().items()}
    bar.total = len(adapter.entries) + len(set(fresh) - set(adapter.entries))

    def materialize(name: str) -> torch.Tensor:
        bar.update()
        if name in adapter.entries:
            return adapter.to_megatron(name, tensors.get)
        if name in fresh:
            return fresh[name]
        raise ConversionError(f"{tensors.folder}: nothing in the {adapter.family.model_type} table "
                              f"fills {name}")
    return materialize


def import_hf(hf_dir: str | Path, output: str | Path, *, tensor_parallel: int = 1,
              pipeline_parallel: int = 1, dtype: Optional[str] = None, overwrite: bool = False,
              progress: bool = False, verify: bool = False,
              head: ImportHead = ImportHead()) -> Path:
    """Convert; ``head``: the embedding head's settings (pooling, attention, projection_dim, ...).

    ``dtype`` None keeps the dtype the weights are stored in (``source_dtype``); a given one is a
    deliberate cast, logged. Both are recorded in ``provenance.json`` (``dtype``, ``source_dtype``).

    Head fields left out (or None) come from the model's sentence-transformers pipeline when it has
    one (pooling mode, normalisation), else from the defaults. ``provenance.json`` records the
    family, the HF classes, the tokenizer (copied into ``tokenizer/``) and that pipeline."""
    from megatron_hybridir.model.builder import build_model, padded_vocab_size
    from megatron_hybridir.runtime.distributed import ensure_runtime

    if not isinstance(head, ImportHead):
        raise TypeError(f"import_hf: head must be an ImportHead, got {type(head).__name__} {head!r}")
    ensure_runtime()
    hf_dir, output = Path(hf_dir), Path(output)
    hf_config = read_json(hf_dir / "config.json", "the model's config")
    family = mappings.hf_family(hf_config, str(hf_dir / "config.json"))
    st_pipeline = provenance.read_sentence_transformers(hf_dir)
    head_fields = {**provenance.head_from_sentence_transformers(
                       st_pipeline, pooling_given=head.pooling is not None),
                   **head.chosen()}
    model_cfg = model_config_from_hf(hf_config, str(hf_dir / "config.json"), **head_fields)
    check_parallel(model_cfg, tensor_parallel, pipeline_parallel, str(hf_dir))
    # The embedding rows of the target TP's vocabulary padding, so the checkpoint loads at that TP.
    rows = padded_vocab_size(model_cfg.vocab_size, divisible_by=model_cfg.make_vocab_size_divisible_by,
                             tp=tensor_parallel)
    adapter = StateDictAdapter(model_cfg, family, megatron_rows=rows)
    tensors = HFTensors(hf_dir, family)
    dtype, stored = import_dtype(hf_dir, hf_config, tensors, plan(model_cfg, adapter, tensors), dtype)
    if tensors.ignored:
        log.info("not converted (no counterpart in an embedding model): %s", tensors.ignored)
    # Built at TP=1 with those rows on the meta device: Megatron's keys and shapes without storage
    # (see streamed_save.py).
    with torch.device("meta"):
        skeleton = build_model(model_cfg, ParallelConfig(), precision=PrecisionConfig(dtype=dtype),
                               vocab_rows=rows)
    bar = tqdm(desc="import", unit="tensor", disable=not progress)
    materialize = materializer(adapter, tensors, model_cfg, bar)
    with atomic_folder(output, overwrite, kind="converted checkpoint") as tmp:
        (tmp / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(model_cfg), sort_keys=False))
        tokenizer = copy_tokenizer(hf_dir, tmp / "tokenizer")
        record = provenance.for_import(hf_dir, hf_config, family.name, tokenizer)
        record.update(dtype=dtype, source_dtype=stored, tensor_parallel=tensor_parallel,
                      pipeline_parallel=pipeline_parallel)
        write_provenance(tmp, record)
        save_streamed(skeleton.sharded_state_dict(), tmp / "checkpoint", materialize)
        bar.close()
        if verify:                   # before the rename: a failed check leaves no output
            with tempfile.TemporaryDirectory() as back:   # the HF -> Megatron -> HF trip
                exported = export_hf(tmp, Path(back) / "back", tokenizer=tmp / "tokenizer")
                checks.verify_import(hf_dir, tmp, exported=exported)
    log.info("wrote %s (%s, TP=%d vocabulary padding %d rows)", output, family.model_type,
             tensor_parallel, rows)
    return output
