"""Validation of a loaded config: fail at start-up naming the field, the value and what was
expected, instead of crashing deep inside Megatron-Core (or training on a silently wrong value).

Why it exists: the schema (``config/schema.py``) types each field; this module holds what a type
cannot say: the range of every numeric field (declared on the field, ``config/ranges.py``;
collected in ``_RANGES``, which ``tests/unit/test_config_properties.py`` reads), ``Literal``
choices of a config built in code, and the constraints between fields (heads vs tensor parallelism, layers vs pipeline stages, the
layer kind's flags, the recorded family, Matryoshka dimensions, the world size).

What it does not do: read files (``config/loading.py``) or check the sampler's own settings, whose
rules live with the sampler (``data/sampler.check_settings``, called here for ``data``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, Literal, Optional

from megatron_hybridir.config.ranges import check_bounds, ranges_of
from megatron_hybridir.config.schema import (
    ConfigError,
    LoraConfig,
    LossConfig,
    MATRYOSHKA_FULL,
    ModelConfig,
    ParallelConfig,
    RunConfig,
)
from megatron_hybridir.data.sampler import check_settings
from megatron_hybridir.model.families import FAMILIES
from megatron_hybridir.model.pooling_kinds import POOLING_KINDS



def _require(cond: bool, field_path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_path}: {message}")


def _one_of(choices: tuple) -> str:
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def choice_error(path: str, value: Any, choices: tuple) -> ConfigError:
    """The error of a value outside a ``Literal`` field's choices (loader and validation)."""
    return ConfigError(f"{path}: expected {_one_of(choices)}, got {value!r}")


def _literal_choices(annotation: Any) -> Optional[tuple]:
    """The choices of ``Literal[...]``, ``Optional[Literal[...]]`` or ``list[Literal[...]]``."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    inner = [_literal_choices(a) for a in typing.get_args(annotation) if a is not type(None)]
    return next((c for c in inner if c), None)


def check_choices(node: Any, prefix: str = "") -> None:
    """Every ``Literal``-typed field holds one of its choices (a config built in code skips the
    loader's coercion, so this repeats its check)."""
    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value, path = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_choices(value, path + ".")
            continue
        choices = _literal_choices(hints[f.name])
        if choices is None or value is None:
            continue
        for where, v in ([(f"{path}[{i}]", v) for i, v in enumerate(value)]
                         if isinstance(value, list) else [(path, value)]):
            if v not in choices:
                raise choice_error(where, v, choices)


def _finite_floats(node: Any, prefix: str = "") -> None:
    """Every float anywhere in the tree is a number: NaN and inf pass ``x > 0``-style checks
    vacuously (``nan > 0`` is False, but ``nan <= 1`` is too) and then fail deep inside torch."""
    for f in dataclasses.fields(node):
        value, path = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _finite_floats(value, path + ".")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{path}: must be a finite number, got {v}")


# Every numeric field's range sits on the field (``Annotated[int, Bounds(1)]`` in
# ``config/schema.py``): counts and sizes that must be at least 1 (or 0) — zero or negative values
# exit 0 having done nothing or divide by zero later — and rates, probabilities and scales. The
# sampler's fields (data.alpha, language_temperature, source_weights) follow its own rules
# (data/sampler.check_settings); loss.matryoshka_dims depends on the embedding size
# (validate_matryoshka). The property test in tests/unit/test_config_properties.py reads this.
_RANGES = tuple(ranges_of(RunConfig))


def field_value(config: Any, path: str) -> Any:
    """The value at a dotted path; None where an optional section on the way is unset."""
    node = config
    for part in path.split("."):
        if node is None:
            return None
        node = getattr(node, part)
    return node


def check_ranges(node: Any, section: str = "") -> None:
    """The ranges on ``node``'s fields (``node`` being the section at ``section``, e.g. ``model.``)."""
    check_bounds(node, section, ConfigError)


# Path fields where "" would read as unset: ``checkpoint.dir=$RUN_DIR`` with the variable empty
# trained without saving anything, and exited 0.
_PATH_FIELDS = ("checkpoint.dir", "checkpoint.init_from", "data.path")


def validate_values(config: RunConfig) -> None:
    """Finite floats, every numeric field's range, ``Literal`` choices and the sampler's fields."""
    for path in _PATH_FIELDS:
        value = field_value(config, path)
        _require(value is None or value.strip() != "", path,
                 f"empty path {value!r}; name a folder, or leave it unset (null) for none")
    _finite_floats(config)
    check_ranges(config)
    check_choices(config)
    o = config.optim
    _require(o.min_lr <= o.lr, "optim.min_lr", f"{o.min_lr} is above optim.lr={o.lr}")
    try:
        check_settings(config.data, where="data")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def validate_paths(config: RunConfig) -> None:
    """Inputs that must exist before any process group or model is built (not at load time, so a
    cluster recipe still loads for ``--dry-run`` on a laptop)."""
    path = config.data.path
    if path is not None:
        _require(Path(path).is_dir(), "data.path", f"{path} does not exist (run "
                 f"tools/preprocess_data.py first, or leave data.path unset for synthetic pairs)")
        _require((Path(path) / "manifest.json").is_file(), "data.path",
                 f"{path} has no manifest.json; it is not a folder written by tools/preprocess_data.py")
    if config.loss.distillation.weight > 0:
        _validate_teacher_scores(path)


def _validate_teacher_scores(path: Optional[str]) -> None:
    """Distillation needs teacher scores for every item of the data, known before launch."""
    _require(path is not None, "loss.distillation.weight",
             "distillation needs teacher scores, which synthetic pairs lack: set data.path to a "
             "folder preprocessed from records with teacher_scores")
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    have, items = manifest.get("teacher_scores", {}).get("items", 0), manifest.get("num_items")
    _require(have == items, "loss.distillation.weight",
             f"distillation needs teacher scores for every item, but data.path {path} has them for "
             f"{have} of {items} items (mine them with tools/mine_hard_negatives.py --teacher, then "
             f"rerun tools/preprocess_data.py)")


def _validate_split(model: ModelConfig, parallel: ParallelConfig) -> None:
    """Heads, query groups, MLP width and layers divide across the tensor / pipeline ranks."""
    tp, pp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size
    vpp = parallel.virtual_pipeline_model_parallel_size
    _require(model.hidden_size % model.num_attention_heads == 0, "model.hidden_size",
             f"{model.hidden_size} is not divisible by model.num_attention_heads="
             f"{model.num_attention_heads}")
    _require(model.num_attention_heads % tp == 0, "model.num_attention_heads",
             f"{model.num_attention_heads} heads are not divisible by "
             f"parallel.tensor_model_parallel_size={tp}")
    groups = model.kv_heads
    _require(model.num_attention_heads % groups == 0, "model.num_query_groups",
             f"model.num_attention_heads={model.num_attention_heads} is not divisible by "
             f"{groups} query groups")
    _require(groups % tp == 0, "model.num_query_groups",
             f"{groups} query groups are not divisible by parallel.tensor_model_parallel_size={tp}")
    _require(model.ffn_hidden_size % tp == 0, "model.ffn_hidden_size",
             f"{model.ffn_hidden_size} is not divisible by parallel.tensor_model_parallel_size={tp}")
    chunks = pp * (vpp or 1)
    _require(model.num_layers % chunks == 0, "model.num_layers",
             f"{model.num_layers} layers are not divisible by parallel.pipeline_model_parallel_size"
             f"={pp}" + (f" x virtual_pipeline_model_parallel_size={vpp}" if vpp else ""))
    if vpp is not None:
        _require(pp >= 2, "parallel.virtual_pipeline_model_parallel_size",
                 "needs pipeline_model_parallel_size >= 2 and a value >= 2")
    if parallel.sequence_parallel:
        _require(tp > 1, "parallel.sequence_parallel", "needs tensor_model_parallel_size > 1")


def _validate_layer_kind(model: ModelConfig, *, seq_length: int) -> None:
    """The flags each layer kind (llama / bert) supports, and the position limit."""
    longest = model.max_position_embeddings - model.position_offset
    _require(seq_length <= longest, "seq_length",
             f"{seq_length} is longer than model.max_position_embeddings="
             f"{model.max_position_embeddings}" +
             (f" minus model.position_offset={model.position_offset}" if model.position_offset else ""))
    if model.layer_kind == "bert":
        _require(model.attention == "bidirectional", "model.attention",
                 "a bert encoder is bidirectional")
        _require(model.num_query_groups in (None, model.num_attention_heads), "model.num_query_groups",
                 "a bert encoder has multi-head attention (leave it unset)")
        _require(not (model.qk_layernorm or model.rope_scaling_factor), "model.qk_layernorm",
                 "qk_layernorm / rope_scaling_factor do not apply to a bert encoder")
    else:
        _require(model.type_vocab_size == 0, "model.type_vocab_size",
                 "token types need model.layer_kind=bert")
        _require(model.position_offset == 0, "model.position_offset",
                 "position offsets need model.layer_kind=bert")


def _validate_head(model: ModelConfig) -> None:
    """The pooling head: a known pooling kind (``model/pooling_kinds.py``, plain data beside the
    torch registry ``model/pooling/``) and that kind's own checks."""
    _require(model.pooling in POOLING_KINDS, "model.pooling",
             f"unknown pooling {model.pooling!r}; expected one of {list(POOLING_KINDS)}")
    for field_path, message in POOLING_KINDS[model.pooling].check(model):
        raise ConfigError(f"{field_path}: {message}")


def _validate_family(model: ModelConfig) -> None:
    """A recorded family fixes the layer kind and some flags (Qwen2's QKV bias, Qwen3's QK norm)."""
    fam = FAMILIES.get(model.family)
    _require(fam is not None, "model.family",
             f"unknown family {model.family!r}; expected one of {sorted(FAMILIES)}")
    for name, value in fam.model_values().items():
        _require(getattr(model, name) == value, f"model.{name}",
                 f"{getattr(model, name)!r} contradicts model.family={model.family} ({name}={value!r})")
    for flag in ("add_qkv_bias", "qk_layernorm"):
        _require(getattr(model, flag) == bool(fam.fixed.get(flag)), f"model.{flag}",
                 f"{getattr(model, flag)} contradicts model.family={model.family}")


def validate_model(model: ModelConfig, parallel: ParallelConfig, *, seq_length: int) -> None:
    """The model section and its parallel layout, on their own (tools that build a model)."""
    check_ranges(model, "model.")
    check_ranges(parallel, "parallel.")
    check_choices(model, "model.")
    _validate_split(model, parallel)
    _validate_head(model)
    if model.family is not None:
        _validate_family(model)
    _validate_layer_kind(model, seq_length=seq_length)
    if model.lora is not None:
        validate_lora(model.lora)


def validate_lora(lora: LoraConfig) -> None:
    """Targets of the adapters (their sizes are in ``_RANGES``)."""
    _require(len(lora.target_modules) > 0, "model.lora.target_modules", "name at least one target")
    check_choices(lora, "model.lora.")
    _require(len(set(lora.target_modules)) == len(lora.target_modules), "model.lora.target_modules",
             f"duplicate targets in {lora.target_modules}")


def validate_matryoshka(loss: LossConfig, model: ModelConfig) -> None:
    """Prefix sizes within the embedding, increasing; one weight each (weights' range: _RANGES)."""
    dims = loss.matryoshka_dims
    if dims is None:
        _require(loss.matryoshka_weights is None, "loss.matryoshka_weights",
                 "needs loss.matryoshka_dims")
        return
    full = model.embedding_dim
    _require(len(dims) > 0, "loss.matryoshka_dims", "name at least one dimension")
    resolved = loss.resolved_matryoshka_dims(full)
    for i, (d, r) in enumerate(zip(dims, resolved)):
        ok = d == MATRYOSHKA_FULL or (isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= full)
        _require(ok, f"loss.matryoshka_dims[{i}]", f"expected an integer in [1, {full}] (the "
                 f"embedding size) or {MATRYOSHKA_FULL!r}, got {d!r}")
    _require(all(a < b for a, b in zip(resolved, resolved[1:])), "loss.matryoshka_dims",
             f"must be strictly increasing, got {dims}")
    weights = loss.matryoshka_weights
    if weights is not None:
        _require(len(weights) == len(dims), "loss.matryoshka_weights",
                 f"{len(weights)} weights for {len(dims)} dimensions")


def _validate_world(config: RunConfig, world_size: int) -> None:
    """The launcher's world size fits the layout, and the global batch splits over DP ranks."""
    data = config.data
    tp, pp = config.parallel.tensor_model_parallel_size, config.parallel.pipeline_model_parallel_size
    _require(world_size % (tp * pp) == 0, "parallel",
             f"world size {world_size} is not divisible by parallel.tensor_model_parallel_size"
             f" x parallel.pipeline_model_parallel_size = {tp} x {pp} = {tp * pp}; start a "
             f"multiple of {tp * pp} processes (e.g. torchrun --nproc_per_node {tp * pp} -m "
             f"megatron_hybridir.train ...) or change the parallel layout")
    dp = world_size // (tp * pp)
    _require(data.global_batch_size % (data.micro_batch_size * dp) == 0,
             "data.global_batch_size",
             f"{data.global_batch_size} is not divisible by data.micro_batch_size "
             f"({data.micro_batch_size}) x data-parallel size ({dp})")


def _validate_token_budget(config: RunConfig) -> None:
    """Token-budget micro-batches hold a varying number of pairs: they are packed streams, and the
    loss must not depend on the split (GradCache; plain micro-batching would draw in-batch
    negatives from each piece and all-gather pieces of unequal size over DP ranks)."""
    budget = config.data.micro_batch_tokens
    if budget is None:
        return
    _require(config.data.packing, "data.micro_batch_tokens",
             f"{budget} needs data.packing=true (micro-batches of whole pairs as token streams)")
    _require(config.training.gradcache, "data.micro_batch_tokens",
             f"{budget} needs training.gradcache=true (the loss over the whole global batch, "
             f"whatever the number of pairs in each micro-batch)")
    _require(budget >= config.seq_length * (2 + config.loss.num_hard_negatives),
             "data.micro_batch_tokens",
             f"{budget} cannot hold one pair of the longest rows: seq_length {config.seq_length} x "
             f"(2 + loss.num_hard_negatives={config.loss.num_hard_negatives}) = "
             f"{config.seq_length * (2 + config.loss.num_hard_negatives)} tokens")


def validate(config: RunConfig, *, world_size: Optional[int] = None) -> None:
    """Check everything knowable before start-up; ``world_size`` adds the batch-layout checks."""
    validate_values(config)
    validate_model(config.model, config.parallel, seq_length=config.seq_length)
    if world_size is not None:
        _validate_world(config, world_size)
    validate_matryoshka(config.loss, config.model)
    _validate_token_budget(config)
    # NOTE: GradCache under the interleaved schedule returns the whole-batch loss but wrong
    # gradients (embedding gradient off by 2x in a parity run, packed or not; issue 26's report),
    # so the pair is refused until that is fixed and tested.
    if config.parallel.virtual_pipeline_model_parallel_size is not None:
        _require(not config.training.gradcache, "training.gradcache",
                 "true with parallel.virtual_pipeline_model_parallel_size="
                 f"{config.parallel.virtual_pipeline_model_parallel_size} is not supported (its "
                 f"gradients differ from the whole batch's); drop the virtual stages or GradCache")
    if config.loss.distillation.weight > 0:
        _require(config.loss.num_hard_negatives >= 1, "loss.distillation.weight",
                 "distillation compares scores of the positive and the hard negatives: needs "
                 "loss.num_hard_negatives >= 1")
    if config.model.lora is not None:
        _require(bool(config.checkpoint.init_from), "checkpoint.init_from",
                 "model.lora trains adapters on a frozen base: name the base checkpoint")
    if config.precision.fp8 is not None:
        _require(config.model.use_transformer_engine, "precision.fp8",
                 "fp8 needs model.use_transformer_engine=true")
