"""A trained checkpoint (any TP/PP) -> a Hugging Face folder plus sentence-transformers files.

Why it exists: users end with a folder any retrieval tool loads — ``AutoModel.from_pretrained``
offline without remote code, ``SentenceTransformer(path)``, mteb. Bidirectional attention survives
the trip through the config: transformers (>= 5) builds a bidirectional mask for these models when
``config.json`` has ``"is_causal": false`` (``masking_utils.create_causal_mask``), which we write for
``model.attention: bidirectional``.

An export is a composition of parts that each own one thing: :class:`ExportSettings` (what the
user chose) resolved against what the checkpoint records into an :class:`ExportPlan`; a
checkpoint reader (``checkpoint_reader``, or ``lora_merge``'s merged one) that yields the globals
and then one layer at a time; the family's state-dict adapter (``adapter``) that turns each
Megatron tensor into its HF tensors; a streaming shard writer (``shard_writer``); then the config,
tokenizer, sentence-transformers files (``st_modules``), the run's extras and ``--verify``. Peak
memory is one layer plus one output shard, not the model.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ModelConfig
from megatron_hybridir.convert import export_extras, st_modules, verify
from megatron_hybridir.convert.adapter import StateDictAdapter, export_family, hf_config
from megatron_hybridir.convert.io import atomic_folder
from megatron_hybridir.convert.lora_merge import open_checkpoint
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.convert.shard_writer import ShardWriter
from megatron_hybridir.model.families import Family

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ExportSettings:
    """What the user chose; every ``None`` defaults to what the checkpoint records."""
    tokenizer: Optional[str | Path] = None
    """Tokenizer folder (default: the one the checkpoint records)."""
    query_prompt: Optional[str] = None
    """Default: the training data's query prompt, else the source model's."""
    passage_prompt: Optional[str] = None
    """Default: the training data's passage prompt, else the source model's."""
    dtype: Optional[str] = None
    """bf16 / fp16 / fp32 cast of the weights (default: the dtype they are stored in)."""
    max_shard_bytes: int = 256 << 20
    """A safetensors shard is closed once it holds this many bytes."""
    max_seq_length: Optional[int] = None
    """Default: the source model's, else the run's seq_length."""
    family: Optional[str] = None
    """Family to write (default: the recorded ``model.family``)."""
    overwrite: bool = False
    """Replace an existing export folder."""
    verify: bool = False
    """Compare ``SentenceTransformer(output)`` with the Megatron model before the folder appears."""
    peft_adapter: bool = False
    """LoRA runs: also write the unmerged adapter (PEFT format) to ``lora_adapter/``."""
    task_instructions: Optional[dict] = None
    """{mteb task: instruction} written as ``"<task>-query"`` prompts (``export_extras.task_prompts``;
    default: the documented ones when the training data were instructed, else none)."""
    instruction_template: Optional[str] = None
    """Template of those prompts (default: the training data's, else E5-Mistral's)."""

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConversionError(f"--dtype {self.dtype!r}: expected one of {list(DTYPES)}")


@dataclass(frozen=True)
class ExportPlan:
    """The settings resolved against the checkpoint, checked before anything is written."""
    model: ModelConfig
    ckpt: Path                    # the torch_dist folder
    info: dict                    # resolve_checkpoint's record (folder, provenance, seq_length)
    family: Family
    tokenizer: Path               # the folder the tokenizer files are copied from
    tok: object                   # the loaded tokenizer
    prompts: dict
    max_seq_length: int
    cast: Optional[torch.dtype]   # None: keep the stored dtype


def resolve_prompts(model: ModelConfig, info: dict, *, query_prompt: Optional[str],
                    passage_prompt: Optional[str], max_seq_length: Optional[int],
                    task_instructions: Optional[dict] = None,
                    instruction_template: Optional[str] = None) -> tuple[dict, int]:
    """(prompts, max_seq_length) of the export. Explicit arguments win; then a run's training data
    (the prompts its data were tokenized with); then the source model's sentence-transformers
    pipeline (its prompts — none if it had none — and max_seq_length); then the run's seq_length."""
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
    prompts.update(export_extras.task_prompts(record, task_instructions=task_instructions,
                                              instruction_template=instruction_template))
    length = (max_seq_length or st.get("max_seq_length") or info.get("seq_length")
              or model.max_position_embeddings - model.position_offset)
    return prompts, int(length)


def plan_export(checkpoint: Path, settings: ExportSettings) -> ExportPlan:
    """Resolve and check: model and family, tokenizer (which must fit the embedding rows), prompts,
    sequence length and dtype. Prompts, ``max_seq_length``, tokenizer and family default to what the
    checkpoint records (``provenance.json``), so a run directory needs no flags."""
    model, ckpt, info = resolve_checkpoint(checkpoint)
    st_modules.pooling_mode(model)            # refuse a pooling type export cannot express
    family = export_family(model, settings.family)
    tokenizer = _tokenizer_source(checkpoint, info, settings.tokenizer)
    tok = _load_tokenizer(tokenizer)
    if len(tok) > model.vocab_size:
        raise ConversionError(f"tokenizer {tokenizer}: {len(tok)} tokens, but {checkpoint} has "
                              f"{model.vocab_size} embedding rows (model.vocab_size); ids past "
                              f"{model.vocab_size - 1} would have no embedding. Pass the tokenizer "
                              f"the model was trained with (--tokenizer)")
    prompts, seq_len = resolve_prompts(model, info, query_prompt=settings.query_prompt,
                                       passage_prompt=settings.passage_prompt,
                                       max_seq_length=settings.max_seq_length,
                                       task_instructions=settings.task_instructions,
                                       instruction_template=settings.instruction_template)
    cast = DTYPES.get(settings.dtype)
    if cast is None:
        log.info("weights exported in the dtype they are stored in (--dtype casts)")
    else:
        log.info("casting the weights to %s (--dtype %s)", cast, settings.dtype)
    return ExportPlan(model=model, ckpt=ckpt, info=info, family=family, tokenizer=tokenizer, tok=tok,
                      prompts=prompts, max_seq_length=seq_len, cast=cast)


def write_weights(groups: Iterator[dict[str, torch.Tensor]], adapter: StateDictAdapter,
                  writer: ShardWriter, cast: Optional[torch.dtype]) -> dict[str, torch.Tensor]:
    """Stream the Megatron tensor groups through the adapter into the shard writer; the head
    tensors (``head.*``: pooler, projection), which the sentence-transformers modules hold."""
    head = {}
    for group in groups:
        head.update({k: v for k, v in group.items() if k.startswith("head.")})
        for tensors in adapter.to_hf(group):
            writer.add({name: t.to(cast) if cast else t for name, t in tensors.items()})
    writer.close()
    return head


def export_hf(checkpoint: str | Path, output: str | Path,
              settings: Optional[ExportSettings] = None, **options) -> Path:
    """Export ``checkpoint`` (a run directory, ``step_N`` or converted folder) to ``output``;
    ``settings`` or its fields as keywords (``export_hf(ckpt, out, dtype="bf16")``). LoRA adapters
    are merged into the base, and with ``peft_adapter`` also written unmerged (PEFT format) to
    ``lora_adapter/``."""
    if settings is not None and options:
        raise TypeError("export_hf: pass settings or its fields as keywords, not both")
    settings = settings or ExportSettings(**options)
    checkpoint, output = Path(checkpoint), Path(output)
    plan = plan_export(checkpoint, settings)
    model = plan.model
    with atomic_folder(output, settings.overwrite, kind="Hugging Face export") as tmp:
        head = write_weights(open_checkpoint(model, plan.ckpt).groups(),
                             StateDictAdapter(model, plan.family),
                             ShardWriter(tmp, settings.max_shard_bytes), plan.cast)
        hf_config(model, plan.family).save_pretrained(tmp)
        _copy_tokenizer(plan.tokenizer, plan.tok, tmp)
        st_modules.write_modules(tmp, model, head, plan.prompts, plan.max_seq_length,
                                 (plan.info.get("provenance") or {}).get("sentence_transformers"))
        export_extras.write_extras(tmp, model=model, ckpt=plan.ckpt, checkpoint=checkpoint,
                                   peft_adapter=settings.peft_adapter)
        if settings.verify:          # before the rename: a failed check leaves no output
            verify.verify_export(checkpoint, tmp)
    log.info("exported %s -> %s (%s, %d layers)", plan.ckpt, output, plan.family.model_type,
             model.num_layers)
    return output


def _tokenizer_source(checkpoint: Path, info: dict, given: Optional[str | Path]) -> Path:
    """The tokenizer folder: ``given``, else the one the checkpoint records. Never a default
    path: an empty ``Path("")`` is the working directory, whose tokenizer (if any) is not the
    model's."""
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
    if tok.pad_token is None:
        vocab = tok.get_vocab()
        pad = next((t for t in ("<pad>", "[PAD]", "<unk>", "</s>", "<|endoftext|>") if t in vocab), None)
        if pad is None:
            raise ConversionError(f"tokenizer {source}: no pad token and none of <pad>/<unk>/</s> to use")
        tok.pad_token = pad
        tok.save_pretrained(str(out))
        return
    for name in provenance.TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    if not any((source / n).is_file() for n in ("tokenizer_config.json", "tokenizer.json")):
        tok.save_pretrained(str(out))
