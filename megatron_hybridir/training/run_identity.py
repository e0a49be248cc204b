"""A run's identity: the model it starts from, the data it reads, and what a relaunch may change.

Why it exists: three silent failures share one cause — nothing compared a run with what it came
from. (1) ``checkpoint.init_from`` made users retype every size of the converted model, and a typo
trained a different model; now the model section comes from the checkpoint and YAML may change only
``INIT_OVERRIDABLE``. (2) Data tokenized with another tokenizer, or with ids past the model's
vocabulary, trained silently (zero embeddings at TP=2); now the preprocessing manifest is checked
against the initial checkpoint's tokenizer and the model's vocabulary before a model exists. (3) A
relaunch with a different config rewrote ``config.yaml``; now ``config.yaml`` is written once, a
relaunch is compared with it, fields that cannot change stop the launch (listed, before anything
is written), and honoured changes go to ``launches/<n>.yaml``.

It also writes the run's ``provenance.json`` (``convert/provenance``): the initial checkpoint's
record, the tokenizer (copied into ``tokenizer/``) and the data's manifest identity, which export
reads.

What it does not do: load weights (``training/checkpoint``) or validate single values (``config``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Optional

import yaml

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    from_dict,
    save_config,
    to_dict,
)
from megatron_hybridir.model.families import family_of

logger = logging.getLogger(__name__)

# ModelConfig fields a run started from a checkpoint may set differently: regularisation, the
# pooling head (new head weights start fresh), the attention mask, memory/kernels choices, LoRA
# adapters on the frozen base, and the vocabulary padding multiple (a padding that changes the
# stored embedding shape fails at load, naming the tensor).
INIT_OVERRIDABLE = ("hidden_dropout", "attention_dropout", "pooling", "latent_num_latents",
                    "latent_num_heads", "pooler", "projection_dim", "normalize", "attention",
                    "init_method_std", "recompute", "use_transformer_engine", "lora",
                    "make_vocab_size_divisible_by", "preset")

# Config fields a relaunch may change; all are honoured from the resumed step on (the LR schedule
# is rebuilt from the new optim values, see trainer.build_training). Everything else is refused.
# checkpoint.dir: a run directory copied or moved elsewhere is the same run. checkpoint.init: it
# only decides step 0 (a relaunch resumes its checkpoint), and runs started before the field
# existed recorded none.
# data.packing / data.micro_batch_tokens: like data.micro_batch_size, they change how a step's
# pairs are cut and laid out, not which pairs or the loss (packed embeddings equal the padded ones;
# the token budget needs GradCache, whose loss spans the whole batch).
RELAUNCH_HONOURED = ("training.", "parallel.", "checkpoint.dir", "checkpoint.save_interval",
                     "checkpoint.keep_last", "checkpoint.allow_data_change", "checkpoint.init",
                     "optim.lr", "optim.min_lr", "optim.weight_decay", "optim.clip_grad",
                     "optim.warmup_steps", "data.micro_batch_size", "data.pad_to_multiple",
                     "data.packing", "data.micro_batch_tokens",
                     "model.recompute", "model.use_transformer_engine")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(old: dict, new: dict) -> dict[str, tuple]:
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _listing(diffs: dict[str, tuple]) -> str:
    return "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diffs.items())


# --- checkpoint.init_from -------------------------------------------------------------------


class ModelSectionMismatch(ConfigError):
    """A config naming ``checkpoint.init_from`` sets model fields that differ from the checkpoint's."""


def init_model(init_from: str, model: ModelConfig, explicit: Optional[dict] = None) -> ModelConfig:
    """The model section of a run started from ``init_from``: the checkpoint's, with the fields in
    ``INIT_OVERRIDABLE`` taken from ``model`` where set. ``explicit`` holds the fields the user
    wrote (YAML + overrides); None means every field of ``model`` counts as written (a RunConfig
    built in code). Other written fields that differ from the checkpoint raise, listed."""
    try:
        source, _, info = resolve_checkpoint(init_from)
    except CheckpointError as err:
        raise ConfigError(f"checkpoint.init_from: {err}") from None
    if source.lora is not None:
        _refuse_lora_source(init_from, info)
    written = dataclasses.asdict(model) if explicit is None else dict(explicit)
    mine = dataclasses.asdict(model)
    theirs = dataclasses.asdict(source)
    refused = {f"model.{k}": (theirs[k], mine[k]) for k in written
               if k in theirs and k not in INIT_OVERRIDABLE and mine[k] != theirs[k]}
    if refused:
        raise ModelSectionMismatch(
            f"checkpoint.init_from={init_from}: the model section comes from the checkpoint; these "
            f"fields differ from it (checkpoint -> config): {_listing(refused)}. Remove them from "
            f"the config; only {', '.join(INIT_OVERRIDABLE[:-1])} may change")
    # getattr, not asdict: nested sections (model.lora) stay dataclasses
    return dataclasses.replace(source, **{k: getattr(model, k) for k in written
                                          if k in INIT_OVERRIDABLE})


def _refuse_lora_source(init_from: str, info: dict) -> None:
    """A LoRA run's checkpoints hold only its adapters (``training/adapter_checkpoint``): it
    cannot be a starting point until the adapters are merged into its base."""
    base = ((info.get("provenance") or {}).get("init_from")
            or "the base named by its config.yaml (checkpoint.init_from)")
    raise ConfigError(
        f"checkpoint.init_from={init_from} is a LoRA run: its checkpoints hold only the LoRA "
        f"adapters, not the frozen base weights ({base}). Merge the adapters into the base first, "
        f"then start from the merged model:\n"
        f"  python tools/export_to_hf.py --checkpoint {init_from} --output MERGED_HF\n"
        f"  python tools/convert_hf_to_megatron.py --hf MERGED_HF --output MERGED\n"
        f"and set checkpoint.init_from=MERGED (to go on training the same adapters, relaunch the "
        f"LoRA run itself: checkpoint.dir={init_from})")


# --- training data --------------------------------------------------------------------------


def manifest_hash(path: str) -> str:
    """sha256 of the data's ``manifest.json``: it lists every output file's size, the sources'
    read / kept counts, the tokenizer and the settings, so other data gives another hash."""
    return hashlib.sha256((Path(path) / "manifest.json").read_bytes()).hexdigest()


def read_manifest(path: str) -> dict:
    manifest = Path(path) / "manifest.json"
    if not manifest.exists():
        raise ConfigError(f"data.path: {path} has no manifest.json (run tools/preprocess_data.py)")
    return json.loads(manifest.read_text())


def check_data(config: RunConfig) -> Optional[dict]:
    """The data's manifest, after checking its vocabulary against the model and its tokenizer
    against the initial checkpoint's; None for synthetic data."""
    if config.data.path is None:
        return None
    manifest = read_manifest(config.data.path)
    where = f"data.path: {Path(config.data.path) / 'manifest.json'}"
    vocab = int(manifest["vocab_size"])
    if vocab > config.model.vocab_size:
        raise ConfigError(f"{where}: tokenizer vocabulary {vocab:,} is larger than model.vocab_size "
                          f"{config.model.vocab_size:,}; token ids up to {vocab - 1:,} have no "
                          f"embedding row. Preprocess with the model's tokenizer")
    _check_lengths(config, manifest, where=where)
    if config.checkpoint.init_from:
        init = _init_tokenizer(config.checkpoint.init_from)
        if init is not None and manifest.get("tokenizer_hash") not in init[0]:
            raise ConfigError(
                f"{where}: tokenized with tokenizer hash {manifest.get('tokenizer_hash')} "
                f"(vocabulary {vocab:,}, {manifest['config'].get('tokenizer')}), but "
                f"checkpoint.init_from={config.checkpoint.init_from} was trained with tokenizer "
                f"hash {' / '.join(sorted(init[0]))} (vocabulary {init[1]:,}, {init[2]}). "
                f"Preprocess the data with the checkpoint's tokenizer")
    return manifest


def _check_lengths(config: RunConfig, manifest: dict, *, where: str) -> None:
    """Each field's longest row, as the collator pads it, fits the model's positions (a learned
    table's rows minus ``position_offset``; RoPE models are held to ``max_position_embeddings``
    too, which ``model/embedding_model`` enforces per batch), and with pipeline parallelism the
    fixed ``seq_length``. Checked on the manifest's limits, like the vocabulary: a longer row
    would otherwise fail only when the sampler draws it, hours in."""
    model, pad = config.model, config.data.pad_to_multiple
    limit = model.max_position_embeddings - model.position_offset
    source = (f"model.max_position_embeddings={model.max_position_embeddings}" +
              (f" minus model.position_offset={model.position_offset}" if model.position_offset else ""))
    lengths = manifest.get("max_length") or manifest.get("config", {}).get("max_length") or {}
    for name, length in sorted(lengths.items()):
        if config.parallel.pipeline_model_parallel_size > 1:    # fixed-length batches
            if length > config.seq_length:
                raise ConfigError(
                    f"{where}: max_length.{name}={length} is longer than seq_length="
                    f"{config.seq_length} (pipeline parallelism pads every row to seq_length); "
                    f"raise seq_length (up to {limit}, {source}) or preprocess again with "
                    f"--max-length {name}={config.seq_length}")
            continue
        padded = -(-length // pad) * pad
        if padded > limit:
            fits = limit // pad * pad
            raise ConfigError(
                f"{where}: max_length.{name}={length} (rows padded to {padded} with "
                f"data.pad_to_multiple={pad}) is longer than the model's position limit {limit} "
                f"({source}); such a row would fail when it is drawn. Preprocess again with "
                f"--max-length {name}={fits}")


def _init_tokenizer(init_from: str) -> Optional[tuple[set, int, Path]]:
    """(hashes, vocabulary, folder) of the tokenizer an initial checkpoint records, if any. A run
    directory also accepts the hash its own training data recorded (a SentencePiece ``.model``
    hashes differently from the ``tokenizer.json`` copied beside the run)."""
    from megatron_hybridir.data.tokenizer import Tokenizer

    _, _, info = resolve_checkpoint(init_from)
    folder = provenance.tokenizer_folder(info["folder"], info.get("provenance"))
    if folder is None or provenance.tokenizer_hash(folder) is None:
        return None
    tok = Tokenizer(str(folder))
    data = (info.get("provenance") or {}).get("data") or {}
    return {tok.hash, data.get("tokenizer_hash")} - {None}, tok.vocab_size, folder


# --- the run directory ----------------------------------------------------------------------


def _honoured(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in RELAUNCH_HONOURED)


def _recorded_data_hash(run_dir: Path) -> Optional[str]:
    """The manifest hash of the data the run last trained on: the newest launch record that has
    one (a deliberate change, ``checkpoint.allow_data_change``), else ``provenance.json``'s."""
    for launch in sorted((run_dir / "launches").glob("*.yaml"), reverse=True):
        data = (yaml.safe_load(launch.read_text()) or {}).get("data") or {}
        if data.get("manifest_sha256"):
            return data["manifest_sha256"]
    return ((_read_json(run_dir / "provenance.json") or {}).get("data") or {}).get("manifest_sha256")


def _data_change(run_dir: Path, config: RunConfig) -> Optional[tuple]:
    """(recorded, current) manifest hashes when the data differ from what the run trained on."""
    if config.data.path is None:
        return None
    recorded, current = _recorded_data_hash(run_dir), manifest_hash(config.data.path)
    if recorded is None:
        logger.warning("%s records no data manifest hash (a run started before it was recorded); "
                       "this launch records %s", run_dir, current)
        return None
    return (recorded, current) if recorded != current else None


def check_relaunch(run_dir: Path, config: RunConfig, manifest: Optional[dict]) -> dict[str, tuple]:
    """Compare a relaunch with the run's ``config.yaml`` and recorded data identity; raise listing
    every field that cannot change; return the honoured changes."""
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    # Normalise through the dataclasses, so defaults added since the run started compare equal.
    saved = to_dict(from_dict(RunConfig, saved))
    diffs = _differences(saved, to_dict(config))
    allowed = config.checkpoint.allow_data_change
    refused = {k: v for k, v in diffs.items()
               if not (_honoured(k) or (allowed and k == "data.path"))}
    recorded = ((_read_json(run_dir / "provenance.json") or {}).get("data") or {})
    if manifest is not None and recorded.get("tokenizer_hash") not in (None, manifest.get("tokenizer_hash")):
        refused["data tokenizer hash"] = (recorded["tokenizer_hash"], manifest.get("tokenizer_hash"))
    if refused:
        raise ConfigError(
            f"{run_dir}: this launch differs from the run's config.yaml (which its checkpoints were "
            f"trained with) in fields that cannot change on a relaunch: {_listing(refused)}. "
            f"Nothing was written; restore them, or start a new checkpoint.dir")
    changed = _data_change(run_dir, config)
    if changed is not None and not allowed:
        raise ConfigError(
            f"{run_dir}: the training data changed since the run trained on it: data.path="
            f"{config.data.path} has manifest.json sha256 {changed[1]}, but the run recorded "
            f"{changed[0]}. Nothing was written; restore the data, start a new checkpoint.dir, or "
            f"continue on the new data deliberately with checkpoint.allow_data_change=true "
            f"(recorded in launches/)")
    if changed is not None:
        diffs["data manifest sha256"] = changed
    return diffs


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def prepare_run_dir(run_dir: Path, config: RunConfig, manifest: Optional[dict], *,
                    resuming: bool, write: bool, start_step: int) -> None:
    """Check a relaunch (every rank), then on the writing rank: ``config.yaml`` and
    ``provenance.json`` for a new run, or ``launches/<n>.yaml`` for a relaunch."""
    changes = check_relaunch(run_dir, config, manifest) if resuming else None
    if not write:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    if changes is None:
        save_config(config, run_dir / "config.yaml")
        write_run_provenance(run_dir, config, manifest)
    launches = run_dir / "launches"
    launches.mkdir(exist_ok=True)
    number = len(list(launches.glob("*.yaml"))) + 1
    record = {"launch": number, "start_step": start_step,
              "changes": {k: {"was": a, "now": b} for k, (a, b) in (changes or {}).items()},
              "data": ({"path": str(Path(config.data.path).resolve()),
                        "manifest_sha256": manifest_hash(config.data.path)}
                       if config.data.path is not None else None),
              "config": to_dict(config)}
    (launches / f"{number:04d}.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    if changes:
        logger.warning("relaunch %d honours changed settings: %s", number, _listing(changes))


def write_run_provenance(run_dir: Path, config: RunConfig, manifest: Optional[dict]) -> dict:
    """``provenance.json`` of a run: the initial checkpoint's record (family, HF classes,
    sentence-transformers pipeline), its tokenizer copied into ``tokenizer/`` (else the data's
    tokenizer), and the identity of the training data (prompts, tokenizer hash, vocabulary)."""

    record = {"format": provenance.FORMAT, "family": family_of(config.model).name,
              "run_id": uuid.uuid4().hex,      # stamped into every checkpoint (check_run_id)
              "init_from": None, "hf": None, "sentence_transformers": None, "tokenizer": None,
              "data": None}
    tokenizer_source = None
    if config.checkpoint.init_from:
        _, _, info = resolve_checkpoint(config.checkpoint.init_from)
        source = info.get("provenance") or {}
        record.update(init_from=str(Path(config.checkpoint.init_from).resolve()),
                      hf=source.get("hf"), sentence_transformers=source.get("sentence_transformers"),
                      data=source.get("data"))
        tokenizer_source = provenance.tokenizer_folder(info["folder"], source)
    if manifest is not None:
        settings = manifest.get("config", {})
        record["data"] = {"path": str(Path(config.data.path).resolve()),
                          "tokenizer_hash": manifest.get("tokenizer_hash"),
                          "vocab_size": manifest.get("vocab_size"),
                          "tokenizer": settings.get("tokenizer"),
                          "prompts": manifest.get("prompts", settings.get("prompts")),
                          "max_length": manifest.get("max_length", settings.get("max_length")),
                          "instructions": manifest.get("instructions"),
                          "manifest_sha256": manifest_hash(config.data.path)}
        if tokenizer_source is None and settings.get("tokenizer"):
            tokenizer_source = Path(settings["tokenizer"])
    if tokenizer_source is not None and Path(tokenizer_source).exists():
        record["tokenizer"] = provenance.copy_tokenizer(Path(tokenizer_source), run_dir / "tokenizer")
    provenance.write(run_dir, record)
    return record


def run_id(run_dir: Path) -> Optional[str]:
    """The id ``provenance.json`` gave this run at its first launch (None for runs recorded before
    ids existed)."""
    return (provenance.read(run_dir) or {}).get("run_id")


def check_run_id(run_dir: Path, step: int, saved: Optional[str]) -> None:
    """A checkpoint resumed in ``run_dir`` was written by this run: checkpoints copied in from
    another run would otherwise continue that run's training (its seed, lr, data order) under this
    run's name and records, exit 0. A whole run directory copied or moved keeps both ids equal."""
    mine = run_id(run_dir)
    if saved is None or mine is None:          # written before run ids existed
        return
    if saved != mine:
        raise CheckpointError(
            f"{run_dir / 'checkpoints' / f'step_{step:08d}'}: written by another run (run id "
            f"{saved}); {run_dir / 'provenance.json'} says this run is {mine}. Checkpoints copied "
            f"in from another run would continue that run under this one's name: move them back, "
            f"or start the other run's directory instead")
