"""A trained checkpoint (any TP/PP) -> a Hugging Face folder plus sentence-transformers files.

Why it exists: users end with a folder any retrieval tool loads — ``AutoModel.from_pretrained``
offline without remote code, ``SentenceTransformer(path)``, mteb. Bidirectional attention survives
the trip through the config: transformers (>= 5) builds a bidirectional mask for these models when
``config.json`` has ``"is_causal": false`` (``masking_utils.create_causal_mask``), which we write for
``model.attention: bidirectional``. The sentence-transformers files use the long-standing layout
(``modules.json``, ``1_Pooling``, ``2_Dense`` for the projection, ``Normalize``), with the query and
passage prompts in ``config_sentence_transformers.json``.

Streaming: Megatron-Core stores each stacked layer tensor as one chunk per layer, so the checkpoint
is read one layer at a time (PyTorch DCP with a planner that requests one chunk; names come from a
one-layer skeleton's sharded state dict) and tensors go to safetensors shards as they come: peak
memory is one layer plus one output shard, not the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Iterator, Optional

import torch

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ModelConfig, ParallelConfig
from megatron_hybridir.convert import mappings
from megatron_hybridir.convert.io import atomic_folder
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.pooling import sentence_transformers_modes

log = logging.getLogger(__name__)


def st_pooling_mode(model: ModelConfig) -> str:
    """The sentence-transformers ``Pooling`` flag of ``model.pooling`` (from the pooling
    registry); a type without one (latent attention) cannot be exported."""
    modes = sentence_transformers_modes()
    if model.pooling not in modes:
        raise ConversionError(f"model.pooling={model.pooling!r} has no sentence-transformers / HF "
                              f"equivalent; export supports {sorted(modes)}")
    return modes[model.pooling]


def hf_architecture(model: ModelConfig, name: Optional[str] = None) -> mappings.Architecture:
    """The family to export as: ``name`` when given, else the family the model records
    (``model.family``, set on import and by presets); models built from scratch take their layer
    kind's base family."""
    from megatron_hybridir.model.families import family_of

    if name:
        arch = mappings.ARCHITECTURES.get(name)
        if arch is None:
            raise ConversionError(f"--family {name!r}: expected one of {sorted(mappings.ARCHITECTURES)}")
        if model.family and name != model.family:
            raise ConversionError(f"--family {name!r}: the checkpoint records "
                                  f"model.family={model.family!r}")
    else:
        arch = family_of(model)
    if model.layer_kind != arch.layers:
        raise ConversionError(f"model.layer_kind={model.layer_kind} cannot be expressed as "
                              f"{arch.model_type}")
    for flag in ("qk_layernorm", "add_qkv_bias"):
        if getattr(model, flag) != bool(arch.fixed.get(flag)):
            raise ConversionError(f"model.{flag}={getattr(model, flag)} cannot be expressed as "
                                  f"{arch.model_type}")
    return arch


def hf_config(model: ModelConfig, arch: mappings.Architecture):
    import transformers

    if model.layer_kind == "bert":
        return _bert_hf_config(model, arch)
    rope = {"rope_type": "default", "rope_theta": model.rotary_base}
    if model.rope_scaling_factor:
        rope.update(rope_type="llama3", factor=model.rope_scaling_factor, **mappings.MEGATRON_LLAMA3_ROPE)
    kwargs = dict(vocab_size=model.vocab_size, hidden_size=model.hidden_size,
                  intermediate_size=model.ffn_hidden_size, num_hidden_layers=model.num_layers,
                  num_attention_heads=model.num_attention_heads,
                  num_key_value_heads=model.kv_heads, head_dim=model.head_dim,
                  max_position_embeddings=model.max_position_embeddings,
                  rms_norm_eps=model.layernorm_epsilon, rope_parameters=rope,
                  tie_word_embeddings=False, architectures=[arch.model_class])
    config = getattr(transformers, arch.config_class)(**kwargs)
    config.is_causal = model.attention == "causal"
    return config


def _bert_hf_config(model: ModelConfig, arch: mappings.Architecture):
    import transformers

    kwargs = dict(vocab_size=model.vocab_size, hidden_size=model.hidden_size,
                  num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
                  intermediate_size=model.ffn_hidden_size, hidden_act="gelu",
                  max_position_embeddings=model.max_position_embeddings,
                  type_vocab_size=model.type_vocab_size, layer_norm_eps=model.layernorm_epsilon,
                  hidden_dropout_prob=model.hidden_dropout,
                  attention_probs_dropout_prob=model.attention_dropout,
                  architectures=[arch.model_class])
    if model.position_offset:
        kwargs["pad_token_id"] = model.position_offset - 1   # RoBERTa: positions from pad + 1
    return getattr(transformers, arch.config_class)(**kwargs)


class CheckpointReader:
    """Reads single tensors, or one layer's slice of a stacked layer tensor, from a Megatron-Core
    ``torch_dist`` checkpoint through PyTorch DCP with a planner that asks for just that chunk."""

    def __init__(self, ckpt: Path):
        from torch.distributed.checkpoint import FileSystemReader

        self.path = ckpt
        self.reader = FileSystemReader(str(ckpt))
        self.metadata = self.reader.read_metadata().state_dict_metadata

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.metadata:
            raise ConversionError(f"{self.path}: no tensor {key} (not an embedding-model checkpoint?)")
        return tuple(self.metadata[key].size)

    def read(self, key: str, layer: Optional[int] = None) -> torch.Tensor:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
        from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
        from torch.distributed.checkpoint.planner import LoadPlan
        from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

        shape = self.shape(key)
        sizes = shape if layer is None else (1, *shape[1:])
        offsets = (0,) * len(shape) if layer is None else (layer, *(0,) * (len(shape) - 1))
        chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
        target = torch.empty(sizes, dtype=self.metadata[key].properties.dtype)

        class OneChunk(DefaultLoadPlanner):
            def create_local_plan(self):
                return LoadPlan(create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key],
                                                                 [chunk]))

            def lookup_tensor(self, index):       # dest offsets are relative to our one chunk
                return target

        dcp.load({key: target}, storage_reader=self.reader, planner=OneChunk(), no_dist=True)
        return target if layer is None else target[0]


def checkpoint_keys(model: ModelConfig) -> dict[str, str]:
    """Local (TP=1) state-dict name of layer 0 / globals -> key in the distributed checkpoint,
    read off a one-layer skeleton's sharded state dict (so it follows Megatron's own naming)."""
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.runtime.distributed import ensure_runtime

    ensure_runtime()
    one = dataclasses.replace(model, num_layers=1, vocab_size=8, make_vocab_size_divisible_by=8)
    with torch.device("meta"):               # names only: no storage for a 30B-wide layer
        skeleton = build_model(one, ParallelConfig())
    return {name: getattr(value, "key") for name, value in skeleton.sharded_state_dict().items()
            if not name.endswith("_extra_state") and hasattr(value, "key")}


def local_key(keys: dict[str, str], name: str) -> tuple[str, Optional[int]]:
    """(checkpoint key, layer or None) of the local TP=1 name ``name`` (``decoder.layers.3.x`` is
    layer 3 of the stacked key of ``decoder.layers.0.x``), given :func:`checkpoint_keys`."""
    if name.startswith("decoder.layers."):
        _, _, i, rest = name.split(".", 3)
        template = f"decoder.layers.0.{rest}"
        if template in keys:
            return keys[template], int(i)
    elif name in keys:
        return keys[name], None
    raise ConversionError(f"no checkpoint key for tensor {name} in this model's layout")


def iter_megatron_tensors(model: ModelConfig, ckpt: Path) -> Iterator[dict[str, torch.Tensor]]:
    """Yield {local name: tensor} for the non-layer tensors, then for each layer in turn."""
    reader = CheckpointReader(ckpt)
    keys = checkpoint_keys(model)
    yield {name: reader.read(key) for name, key in keys.items() if not name.startswith("decoder.layers.")}
    layer_keys = {name.removeprefix("decoder.layers.0."): key for name, key in keys.items()
                  if name.startswith("decoder.layers.")}
    for i in range(model.num_layers):
        yield {f"decoder.layers.{i}.{name}": reader.read(key, layer=i) for name, key in layer_keys.items()}


def _dense_module(out: Path, folder: str, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  activation: str) -> None:
    """A sentence-transformers ``Dense`` module folder (config + safetensors)."""
    from safetensors.torch import save_file

    (out / folder).mkdir()
    (out / folder / "config.json").write_text(json.dumps({
        "in_features": weight.shape[1], "out_features": weight.shape[0], "bias": bias is not None,
        "activation_function": activation}))
    tensors = {"linear.weight": weight.contiguous()}
    if bias is not None:
        tensors["linear.bias"] = bias.contiguous()
    save_file(tensors, out / folder / "model.safetensors")


def _sentence_transformers_files(out: Path, model: ModelConfig, tensors_head: dict,
                                 prompts: dict, max_seq_length: int, recorded: Optional[dict]) -> None:
    """modules.json and module configs; settings the source pipeline had (``recorded``, from
    provenance) are kept unless the model changed them (pooling mode, normalisation)."""
    recorded = recorded or {}
    modules = [("", "sentence_transformers.models.Transformer")]
    pooling = {"word_embedding_dimension": model.hidden_size, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": True}
    pooling.update({k: v for k, v in (recorded.get("pooling") or {}).items()
                    if not k.startswith("pooling_mode_") and k != "word_embedding_dimension"})
    pooling[st_pooling_mode(model)] = True
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    modules.append(("1_Pooling", "sentence_transformers.models.Pooling"))
    dense = "sentence_transformers.models.Dense"
    if model.pooler:                          # BERT pooler (LaBSE): dense + tanh
        path = f"{len(modules)}_Dense"
        _dense_module(out, path, tensors_head["head.pooler.dense.weight"],
                      tensors_head["head.pooler.dense.bias"], "torch.nn.modules.activation.Tanh")
        modules.append((path, dense))
    if model.projection_dim:
        path = f"{len(modules)}_Dense"
        _dense_module(out, path, tensors_head["head.projection.weight"], None,
                      "torch.nn.modules.linear.Identity")
        modules.append((path, dense))
    if model.normalize:
        path = f"{len(modules)}_Normalize"
        (out / path).mkdir()
        modules.append((path, "sentence_transformers.models.Normalize"))
    (out / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)],
        indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": bool(recorded.get("do_lower_case"))}))
    similarity = recorded.get("similarity_fn_name") or ("cosine" if model.normalize else "dot")
    default_prompt = recorded.get("default_prompt_name")
    (out / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts, "default_prompt_name": default_prompt if default_prompt in prompts
         else None, "similarity_fn_name": similarity}, indent=2))


def export_settings(model: ModelConfig, info: dict, *, query_prompt: Optional[str],
                    passage_prompt: Optional[str], max_seq_length: Optional[int],
                    task_instructions: Optional[dict] = None,
                    instruction_template: Optional[str] = None) -> tuple[dict, int]:
    """(prompts, max_seq_length) of the export. Explicit arguments win; then a run's training data
    (the prompts its data were tokenized with); then the source model's sentence-transformers
    pipeline (its prompts — none if it had none — and max_seq_length); then the run's seq_length.
    Per-task instruction prompts: ``export_extras.task_prompts``."""
    from megatron_hybridir.checkpointing import provenance
    from megatron_hybridir.convert.export_extras import task_prompts

    record = info.get("provenance") or {}
    st = record.get("sentence_transformers") or {}
    prompts = provenance.data_prompts(record)
    if prompts is None:
        prompts = dict(st.get("prompts") or {})
    if query_prompt is not None:
        prompts["query"] = query_prompt
    if passage_prompt is not None:
        prompts["document"] = passage_prompt
    prompts = {k: v for k, v in prompts.items() if v}
    prompts.update(task_prompts(record, task_instructions=task_instructions,
                                instruction_template=instruction_template))
    length = (max_seq_length or st.get("max_seq_length") or info.get("seq_length")
              or model.max_position_embeddings - model.position_offset)
    return prompts, int(length)


def export_hf(checkpoint: str | Path, output: str | Path, *, tokenizer: Optional[str | Path] = None,
              query_prompt: Optional[str] = None, passage_prompt: Optional[str] = None,
              dtype: Optional[str] = None, max_shard_bytes: int = 256 << 20,
              max_seq_length: Optional[int] = None, architecture: Optional[str] = None,
              overwrite: bool = False, verify: bool = False, peft_adapter: bool = False,
              task_instructions: Optional[dict] = None,
              instruction_template: Optional[str] = None) -> Path:
    """Export; prompts, ``max_seq_length``, tokenizer and family default to what the checkpoint
    records (``export_settings``, ``provenance.json``), so a run directory needs no flags. LoRA
    adapters are merged into the base, and with ``peft_adapter`` also written unmerged (PEFT
    format) to ``lora_adapter/``. ``task_instructions`` / ``instruction_template``: per-task
    query prompts (``export_extras.task_prompts``)."""
    from megatron_hybridir.convert import export_extras
    from safetensors.torch import save_file
    from megatron_hybridir.checkpointing import provenance

    model, ckpt, info = resolve_checkpoint(checkpoint)
    st_pooling_mode(model)                    # refuse a pooling type export cannot express
    arch = hf_architecture(model, architecture)
    record = info.get("provenance")
    tokenizer = _tokenizer_source(Path(checkpoint), info, tokenizer)
    tok = _load_tokenizer(tokenizer)
    if len(tok) > model.vocab_size:
        raise ConversionError(f"tokenizer {tokenizer}: {len(tok)} tokens, but {checkpoint} has "
                              f"{model.vocab_size} embedding rows (model.vocab_size); ids past "
                              f"{model.vocab_size - 1} would have no embedding. Pass the tokenizer "
                              f"the model was trained with (--tokenizer)")
    prompts, seq_len = export_settings(model, info, query_prompt=query_prompt,
                                       passage_prompt=passage_prompt, max_seq_length=max_seq_length,
                                       task_instructions=task_instructions,
                                       instruction_template=instruction_template)
    cast = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[dtype]
    if cast is None:
        log.info("weights exported in the dtype they are stored in (--dtype casts)")
    else:
        log.info("casting the weights to %s (--dtype %s)", cast, dtype)
    heads, groups = model.num_attention_heads, model.kv_heads
    rules = mappings.rules_for(arch, dataclasses.asdict(model))
    with atomic_folder(Path(output), overwrite, kind="Hugging Face export") as tmp:
        shard, shard_bytes, weight_map, files, head = {}, 0, {}, [], {}

        def flush():
            nonlocal shard, shard_bytes
            if shard:
                name = f"model-{len(files) + 1:05d}.safetensors"
                save_file(shard, tmp / name, metadata={"format": "pt"})
                weight_map.update({k: name for k in shard})
                files.append(name)
                shard, shard_bytes = {}, 0

        for group in export_extras.tensor_groups(model, ckpt):    # LoRA: merged
            head.update({k: v for k, v in group.items() if k.startswith("head.")})
            for rule in rules:
                layer_rule = "{i}" in rule.megatron
                for key in group:
                    i = int(key.split(".")[2]) if layer_rule and key.startswith("decoder.layers.") else None
                    if key != rule.megatron.format(i=i):
                        continue
                    parts = mappings.split(rule.kind, group[key], heads=heads, groups=groups,
                                           rows=model.vocab_size)
                    for name, tensor in zip(rule.hf, parts):
                        tensor = tensor.to(cast) if cast else tensor
                        shard[name.format(i=i)] = tensor.contiguous()
                        shard_bytes += tensor.numel() * tensor.element_size()
                    if shard_bytes >= max_shard_bytes:
                        flush()
        flush()
        if len(files) == 1:
            (tmp / files[0]).rename(tmp / "model.safetensors")
        else:
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {}, "weight_map": weight_map}, indent=2))
        hf_config(model, arch).save_pretrained(tmp)
        _copy_tokenizer(tokenizer, tok, tmp)
        # "document" is the name sentence-transformers' encode_document and mteb look up for passages.
        _sentence_transformers_files(tmp, model, head, prompts, seq_len,
                                     (record or {}).get("sentence_transformers"))
        export_extras.write_extras(tmp, model=model, ckpt=ckpt, checkpoint=Path(checkpoint),
                                   peft_adapter=peft_adapter)
        if verify:                   # before the rename: a failed check leaves no output
            from megatron_hybridir.convert.verify import verify_export
            verify_export(Path(checkpoint), tmp)
    log.info("exported %s -> %s (%s, %d layers)", ckpt, output, arch.model_type, model.num_layers)
    return Path(output)


def _tokenizer_source(checkpoint: Path, info: dict, given: Optional[str | Path]) -> Path:
    """The tokenizer folder: ``given``, else the one the checkpoint records. Never a default
    path: an empty ``Path("")`` is the working directory, whose tokenizer (if any) is not the
    model's."""
    from megatron_hybridir.checkpointing import provenance

    if given is not None and str(given) != "":
        folder, origin = Path(given), "--tokenizer"
    else:
        folder = provenance.tokenizer_folder(info["folder"], info.get("provenance"))
        origin = f"{info['folder'] / provenance.FILE}"
        if folder is None:
            raise ConversionError(f"{checkpoint}: records no tokenizer ({origin} names none; a "
                                  f"run on synthetic data has none); pass --tokenizer FOLDER with "
                                  f"the tokenizer the model was trained with")
    if not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()):
        raise ConversionError(f"tokenizer {folder} (from {origin}): no tokenizer.json or "
                              f"tokenizer_config.json there; pass --tokenizer FOLDER")
    return folder


def _load_tokenizer(source: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (source / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(source))
    return PreTrainedTokenizerFast(tokenizer_file=str(source / "tokenizer.json"))


def _copy_tokenizer(source: Path, tok, out: Path) -> None:
    """Copy tokenizer files as they are (so the export tokenizes exactly as the source model); a
    tokenizer with no pad token is re-saved with one (batched encoding needs it)."""
    from megatron_hybridir.checkpointing.provenance import TOKENIZER_FILES

    if tok.pad_token is None:
        vocab = tok.get_vocab()
        pad = next((t for t in ("<pad>", "[PAD]", "<unk>", "</s>", "<|endoftext|>") if t in vocab), None)
        if pad is None:
            raise ConversionError(f"tokenizer {source}: no pad token and none of <pad>/<unk>/</s> to use")
        tok.pad_token = pad
        tok.save_pretrained(str(out))
        return
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    if not any((source / n).is_file() for n in ("tokenizer_config.json", "tokenizer.json")):
        tok.save_pretrained(str(out))
