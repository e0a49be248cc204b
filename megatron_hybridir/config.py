"""Typed configuration: dataclasses loaded from YAML with dotted ``a.b=value`` overrides.

Why it exists: every knob of a run is one dataclass field with a docstring-style comment, so a run is
fully described by a YAML file plus a few overrides, unknown keys fail loudly, and validation names
the failing field (``model.num_attention_heads``) instead of crashing deep inside Megatron-Core.

What it does not do: build models or process groups. ``model/builder.py`` turns these dataclasses
into Megatron-Core objects; ``runtime/distributed.py`` sets up process groups.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field."""


ATTENTION_TYPES = ("bidirectional", "causal")
ARCHITECTURES = ("llama", "bert")


LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")


@dataclass
class LoraConfig:
    """LoRA adapters on the transformer's parallel linears (``model/lora.py``); the base is frozen."""

    rank: int = 16
    alpha: float = 32.0
    """The update is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the adapter's input (PEFT's lora_dropout)."""
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """Any of qkv (attention input projection), proj (attention output), fc1, fc2."""
    train_head: bool = True
    """Also train the pooling head's parameters (projection, pooler, latent attention, learnable
    temperature), which a base checkpoint may not have; nothing else of the base trains."""


@dataclass
class ModelConfig:
    """Architecture of the embedding model: an LLM turned encoder (Llama / Mistral / Qwen family)
    or a BERT-style encoder (BERT, XLM-R, LaBSE)."""

    preset: Optional[str] = None
    """Name of a preset in ``model/presets.py`` (e.g. ``tiny``); explicit fields override it."""
    architecture: str = "llama"
    """``llama``: pre-RMSNorm, SwiGLU, RoPE, no biases (Llama / Mistral / Qwen). ``bert``: post-
    LayerNorm, GELU, biases, learned absolute positions and token types, embedding LayerNorm
    (BERT / RoBERTa / XLM-R / LaBSE; see ``model/encoder_layers.py``)."""
    family: Optional[str] = None
    """Model family in ``model/families.py`` (llama, llama3, mistral, qwen2, qwen3, xlm-roberta,
    bert): recorded on import and by presets so export writes the family the weights came from.
    None: a model built from scratch (exported as its layer kind's base family)."""
    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_attention_heads: int = 4
    num_query_groups: Optional[int] = None
    """Grouped-query attention: number of key/value heads (None = multi-head attention)."""
    kv_channels: Optional[int] = None
    """Per-head dimension (None = hidden_size / num_attention_heads; Qwen3 sets it explicitly)."""
    vocab_size: int = 256
    make_vocab_size_divisible_by: int = 128
    """The embedding table is padded to a multiple of this times TP (Megatron convention)."""
    max_position_embeddings: int = 512
    """Longest sequence the model accepts (RoPE has no table, but inputs are checked against it)."""
    rotary_base: float = 10000.0
    rope_scaling_factor: Optional[float] = None
    """Llama-3 style RoPE frequency scaling; None disables it."""
    qk_layernorm: bool = False
    """RMSNorm on queries and keys per head (Qwen3)."""
    add_qkv_bias: bool = False
    """Bias on the QKV projection only (Qwen2)."""
    layernorm_epsilon: float = 1e-5
    type_vocab_size: int = 0
    """``bert``: rows of the token-type table (2 for BERT / LaBSE, 1 for XLM-R); type 0 is used."""
    position_offset: int = 0
    """``bert``: first position id (RoBERTa / XLM-R start at padding_idx + 1 = 2, BERT at 0); the
    position table has ``max_position_embeddings`` rows, so inputs may be that minus this long."""
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    attention: str = "bidirectional"
    """``bidirectional`` (padding mask only) or ``causal`` (the LLM's original mask)."""
    pooling: str = "mean"
    """One of mean, last, first, latent_attention."""
    latent_num_latents: int = 512
    """Latent-attention pooling (NV-Embed): size of the trainable latent dictionary."""
    latent_num_heads: int = 8
    pooler: bool = False
    """BERT's pooler after pooling: dense (hidden -> hidden, with bias) + tanh (LaBSE uses it on
    the CLS vector before normalisation)."""
    projection_dim: Optional[int] = None
    """Optional linear projection of the pooled vector to a smaller dimension."""
    normalize: bool = True
    """L2-normalise embeddings, making dot products cosine similarities."""
    use_transformer_engine: bool = False
    """Use Transformer Engine layers when importable (required for fp8); local layers otherwise."""
    recompute: str = "none"
    """Activation recomputation: none, full (every layer re-run in backward) or selective (attention
    core only; needs Transformer Engine)."""
    lora: Optional[LoraConfig] = None
    """Train LoRA adapters on a frozen base (``checkpoint.init_from``) instead of every weight."""


@dataclass
class ParallelConfig:
    """How the model is split across processes; data parallelism is what is left of the world."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: Optional[int] = None
    """Model chunks per pipeline rank (interleaved 1F1B schedule); None disables it."""
    sequence_parallel: bool = False


@dataclass
class LossConfig:
    """InfoNCE over cosine similarities with in-batch negatives spanning the global batch."""

    temperature: float = 0.02
    learnable_temperature: bool = False
    """Learn log(1/temperature), initialised from ``temperature``."""
    symmetric: bool = False
    """Add the passage-to-query InfoNCE term."""
    num_hard_negatives: int = 1
    """Hard negatives per query taken from each training item (0 disables them)."""
    mask_false_negatives: bool = True
    """Mask (logit -inf) in-batch and hard-negative candidates whose content id (hash of the
    normalised text, from preprocessing) equals the query's positive's; data without content ids
    (older preprocessed folders, synthetic batches) train unmasked. Counted as masked_negatives."""
    false_negative_margin: Optional[float] = None
    """Also mask candidates whose cosine score exceeds the positive's score + this margin."""
    matryoshka_dims: Optional[list[Any]] = None
    """Matryoshka: embedding prefixes trained together, increasing, e.g. [64, 128, 256, full]
    (``full`` = the whole embedding); the loss is the weighted sum of InfoNCE over each prefix,
    renormalised (``matryoshka.py``). None trains the full embedding only."""
    matryoshka_weights: Optional[list[float]] = None
    """One weight per entry of matryoshka_dims (default: all 1)."""


@dataclass
class PrecisionConfig:
    """Numeric formats for parameters and compute."""

    dtype: str = "fp32"
    """fp32, bf16 or fp16 for parameters and activations."""
    fp8: Optional[str] = None
    """fp8 format through Transformer Engine (``hybrid`` or ``e4m3``); needs a Hopper GPU and TE."""
    fp8_recipe: str = "delayed"
    """Transformer Engine scaling recipe: delayed, tensorwise, blockwise or mxfp8 (Blackwell)."""


@dataclass
class DataConfig:
    """Training data and the hybrid sampler."""

    path: Optional[str] = None
    """Folder written by tools/preprocess_data.py; None trains on synthetic pairs (smoke runs)."""
    mode: str = "hybrid"
    """monolingual, cross-lingual, hybrid or mixed (see data/sampler.py)."""
    alpha: float = 0.5
    """Probability of a monolingual global batch in hybrid mode (the paper's grid optimum)."""
    language_choice: str = "batch"
    language_temperature: float = 0.0
    source_weights: Optional[list[float]] = None
    global_batch_size: int = 16
    micro_batch_size: int = 4
    """Queries per micro-batch on one data-parallel rank."""
    pad_to_multiple: int = 8


@dataclass
class OptimConfig:
    """Megatron-Core optimizer (Adam) and the warmup + cosine schedule."""

    lr: float = 1e-4
    min_lr: float = 0.0
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    clip_grad: float = 1.0
    warmup_steps: int = 0
    use_distributed_optimizer: bool = False


@dataclass
class TrainingConfig:
    train_steps: int = 100
    gradcache: bool = False
    """Negatives over the whole global batch whatever the micro-batch size (training/gradcache.py)."""
    max_skipped_steps: int = 5
    """Non-finite losses skip the step up to this many times in a row, then training stops."""
    log_interval: int = 10
    exit_interval: int = 0
    """Save and exit after this many steps of this invocation (0: run to train_steps)."""


@dataclass
class CheckpointConfig:
    dir: Optional[str] = None
    """Run directory for checkpoints and logs; None disables saving."""
    save_interval: int = 0
    """Save every N steps (0: only at the end and on SIGTERM / SIGUSR1)."""
    keep_last: int = 2
    init_from: Optional[str] = None
    """Start a new run from these model weights (a folder from tools/convert_hf_to_megatron.py, or
    another run); ignored when the run directory already has a checkpoint to resume. The whole
    model section is taken from it; the config may change only the head and dropout fields
    (``training/run_identity.INIT_OVERRIDABLE``)."""


@dataclass
class RunConfig:
    """Everything one run needs; sub-sections are owned by the modules that consume them."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 1234
    seq_length: int = 64
    """Longest tokenized query or passage fed to the model."""


# --------------------------------------------------------------------------------------------
# Loading: dict/YAML -> dataclass, with field paths in every error.
# --------------------------------------------------------------------------------------------


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return from_dict(annotation, value, prefix=path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
        try:
            coerced = annotation(value)
        except (TypeError, ValueError, OverflowError):   # int(inf) overflows
            raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and coerced != value:
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return coerced
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return [_coerce(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls: type, data: dict, *, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix or cls.__name__
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            node[parts[-1]] = _parse_scalar(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{key.strip()}: value {raw!r} (override {item!r}) is not a YAML "
                              f"value ({str(err).splitlines()[0]}); quote it to pass a string, "
                              f"e.g. {key.strip()}='\"...\"'") from None
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                cls: type = RunConfig) -> Any:
    """Read YAML (optional), apply overrides, build and validate the dataclass tree."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = apply_overrides(data, list(overrides or []))
    config = from_dict(cls, data)
    if hasattr(config, "model") and config.model.preset:
        from megatron_hybridir.model.presets import apply_preset

        config.model = apply_preset(config.model, data.get("model", {}))
    init_from = getattr(getattr(config, "checkpoint", None), "init_from", None)
    if init_from and Path(init_from).exists():
        from megatron_hybridir.training.run_identity import init_model

        # The model section comes from the checkpoint; YAML may change only its head / dropout.
        # (A recipe whose checkpoint is not there yet still loads, for --dry-run; training then
        # stops in training/run_identity naming the missing folder.)
        config.model = init_model(init_from, config.model, data.get("model", {}))
    validate(config)
    return config


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config (what the run really used) as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


# --------------------------------------------------------------------------------------------
# Validation: fail at start-up, naming the field.
# --------------------------------------------------------------------------------------------


def _require(cond: bool, field_path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_path}: {message}")


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


# (field path, lowest allowed value, whether None is allowed): counts and sizes that must be at
# least 1 (or 0) — zero or negative values exit 0 having done nothing or divide by zero later.
_MINIMUMS = (
    ("model.num_layers", 1, False), ("model.hidden_size", 1, False),
    ("model.ffn_hidden_size", 1, False), ("model.num_attention_heads", 1, False),
    ("model.num_query_groups", 1, True), ("model.kv_channels", 1, True),
    ("model.vocab_size", 1, False), ("model.make_vocab_size_divisible_by", 1, False),
    ("model.max_position_embeddings", 1, False), ("model.type_vocab_size", 0, False),
    ("model.position_offset", 0, False), ("model.latent_num_latents", 1, False),
    ("model.latent_num_heads", 1, False), ("model.projection_dim", 1, True),
    ("parallel.tensor_model_parallel_size", 1, False),
    ("parallel.pipeline_model_parallel_size", 1, False),
    ("loss.num_hard_negatives", 0, False),
    ("data.global_batch_size", 1, False), ("data.micro_batch_size", 1, False),
    ("data.pad_to_multiple", 1, False), ("data.language_temperature", 0, False),
    ("optim.min_lr", 0, False), ("optim.weight_decay", 0, False), ("optim.clip_grad", 0, False),
    ("optim.warmup_steps", 0, False),
    ("training.train_steps", 1, False), ("training.max_skipped_steps", 0, False),
    ("training.log_interval", 1, False), ("training.exit_interval", 0, False),
    ("checkpoint.save_interval", 0, False), ("checkpoint.keep_last", 1, False),
    ("seed", 0, False), ("seq_length", 1, False),
)


def _value(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def validate_values(config: "RunConfig") -> None:
    """Ranges of every numeric field and the choice fields not checked elsewhere."""
    _finite_floats(config)
    for path, lowest, optional in _MINIMUMS:
        value = _value(config, path)
        if value is None and optional:
            continue
        _require(value >= lowest, path, f"must be >= {lowest}, got {value}")
    m, o, d = config.model, config.optim, config.data
    _require(m.rotary_base > 0, "model.rotary_base", f"must be > 0, got {m.rotary_base}")
    if m.rope_scaling_factor is not None:
        _require(m.rope_scaling_factor > 0, "model.rope_scaling_factor",
                 f"must be > 0, got {m.rope_scaling_factor}")
    _require(m.layernorm_epsilon > 0, "model.layernorm_epsilon",
             f"must be > 0, got {m.layernorm_epsilon}")
    _require(m.init_method_std >= 0, "model.init_method_std", f"must be >= 0, got {m.init_method_std}")
    for name in ("hidden_dropout", "attention_dropout"):
        value = getattr(m, name)
        _require(0 <= value < 1, f"model.{name}", f"must lie in [0, 1), got {value}")
    _require(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    _require(o.min_lr <= o.lr, "optim.min_lr", f"{o.min_lr} is above optim.lr={o.lr}")
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(o, name)
        _require(0 <= value < 1, f"optim.{name}", f"must lie in [0, 1), got {value}")
    _require(d.language_choice in ("batch", "example"), "data.language_choice",
             f"expected batch or example, got {d.language_choice!r}")
    if d.source_weights is not None:
        _require(all(w >= 0 for w in d.source_weights) and sum(d.source_weights) > 0,
                 "data.source_weights", f"weights must be >= 0 and not all 0, got {d.source_weights}")


def validate_paths(config: "RunConfig") -> None:
    """Inputs that must exist before any process group or model is built (not at load time, so a
    cluster recipe still loads for ``--dry-run`` on a laptop)."""
    path = config.data.path
    if path is not None:
        _require(Path(path).is_dir(), "data.path", f"{path} does not exist (run "
                 f"tools/preprocess_data.py first, or leave data.path unset for synthetic pairs)")
        _require((Path(path) / "manifest.json").is_file(), "data.path",
                 f"{path} has no manifest.json; it is not a folder written by tools/preprocess_data.py")


def validate_model(model: ModelConfig, parallel: ParallelConfig, *, seq_length: int) -> None:
    tp, pp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size
    vpp = parallel.virtual_pipeline_model_parallel_size
    _require(tp >= 1, "parallel.tensor_model_parallel_size", f"must be >= 1, got {tp}")
    _require(pp >= 1, "parallel.pipeline_model_parallel_size", f"must be >= 1, got {pp}")
    _require(model.num_layers >= 1, "model.num_layers", "must be >= 1")
    _require(model.hidden_size % model.num_attention_heads == 0, "model.hidden_size",
             f"{model.hidden_size} is not divisible by model.num_attention_heads="
             f"{model.num_attention_heads}")
    _require(model.num_attention_heads % tp == 0, "model.num_attention_heads",
             f"{model.num_attention_heads} heads are not divisible by "
             f"parallel.tensor_model_parallel_size={tp}")
    groups = model.num_query_groups or model.num_attention_heads
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
        _require(vpp >= 2 and pp >= 2, "parallel.virtual_pipeline_model_parallel_size",
                 "needs pipeline_model_parallel_size >= 2 and a value >= 2")
    from megatron_hybridir.model.pooling import POOLINGS   # lazy: the registry imports torch

    _require(model.pooling in POOLINGS, "model.pooling",
             f"unknown pooling {model.pooling!r}; expected one of {list(POOLINGS)}")
    _require(model.attention in ATTENTION_TYPES, "model.attention",
             f"unknown attention {model.attention!r}; expected one of {list(ATTENTION_TYPES)}")
    _require(model.recompute in ("none", "full", "selective"), "model.recompute",
             f"expected none, full or selective, got {model.recompute!r}")
    _require(model.architecture in ARCHITECTURES, "model.architecture",
             f"unknown architecture {model.architecture!r}; expected one of {list(ARCHITECTURES)}")
    if model.family is not None:
        _validate_family(model)
    longest = model.max_position_embeddings - model.position_offset
    _require(seq_length <= longest, "seq_length",
             f"{seq_length} is longer than model.max_position_embeddings="
             f"{model.max_position_embeddings}" +
             (f" minus model.position_offset={model.position_offset}" if model.position_offset else ""))
    if model.architecture == "bert":
        _require(model.attention == "bidirectional", "model.attention",
                 "a bert encoder is bidirectional")
        _require(model.num_query_groups in (None, model.num_attention_heads), "model.num_query_groups",
                 "a bert encoder has multi-head attention (leave it unset)")
        _require(not (model.qk_layernorm or model.rope_scaling_factor), "model.qk_layernorm",
                 "qk_layernorm / rope_scaling_factor do not apply to a bert encoder")
    else:
        _require(model.type_vocab_size == 0, "model.type_vocab_size",
                 "token types need model.architecture=bert")
        _require(model.position_offset == 0, "model.position_offset",
                 "position offsets need model.architecture=bert")
    if model.projection_dim is not None:
        _require(model.projection_dim >= 1, "model.projection_dim", "must be >= 1")
    for field_path, message in POOLINGS[model.pooling].check(model):
        raise ConfigError(f"{field_path}: {message}")
    if parallel.sequence_parallel:
        _require(tp > 1, "parallel.sequence_parallel", "needs tensor_model_parallel_size > 1")
    if model.lora is not None:
        validate_lora(model.lora)


def validate_lora(lora: LoraConfig) -> None:
    _require(lora.rank >= 1, "model.lora.rank", f"must be >= 1, got {lora.rank}")
    _require(lora.alpha > 0, "model.lora.alpha", f"must be > 0, got {lora.alpha}")
    _require(0.0 <= lora.dropout < 1.0, "model.lora.dropout", f"must lie in [0, 1), got {lora.dropout}")
    _require(len(lora.target_modules) > 0, "model.lora.target_modules", "name at least one target")
    for i, target in enumerate(lora.target_modules):
        _require(target in LORA_TARGETS, f"model.lora.target_modules[{i}]",
                 f"unknown target {target!r}; expected one of {list(LORA_TARGETS)}")
    _require(len(set(lora.target_modules)) == len(lora.target_modules), "model.lora.target_modules",
             f"duplicate targets in {lora.target_modules}")


def embedding_dim(model: ModelConfig) -> int:
    """Size of the model's output embedding."""
    return model.projection_dim or model.hidden_size


def validate_matryoshka(loss: LossConfig, model: ModelConfig) -> None:
    dims = loss.matryoshka_dims
    if dims is None:
        _require(loss.matryoshka_weights is None, "loss.matryoshka_weights",
                 "needs loss.matryoshka_dims")
        return
    full = embedding_dim(model)
    _require(len(dims) > 0, "loss.matryoshka_dims", "name at least one dimension")
    resolved = []
    for i, d in enumerate(dims):
        ok = d == "full" or (isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= full)
        _require(ok, f"loss.matryoshka_dims[{i}]",
                 f"expected an integer in [1, {full}] (the embedding size) or 'full', got {d!r}")
        resolved.append(full if d == "full" else d)
    _require(all(a < b for a, b in zip(resolved, resolved[1:])), "loss.matryoshka_dims",
             f"must be strictly increasing, got {dims}")
    weights = loss.matryoshka_weights
    if weights is not None:
        _require(len(weights) == len(dims), "loss.matryoshka_weights",
                 f"{len(weights)} weights for {len(dims)} dimensions")
        for i, w in enumerate(weights):
            _require(w >= 0, f"loss.matryoshka_weights[{i}]", f"must be >= 0, got {w}")


def _validate_family(model: ModelConfig) -> None:
    """A recorded family fixes the layer kind and some flags (Qwen2's QKV bias, Qwen3's QK norm)."""
    from megatron_hybridir.model.families import FAMILIES

    fam = FAMILIES.get(model.family)
    _require(fam is not None, "model.family",
             f"unknown family {model.family!r}; expected one of {sorted(FAMILIES)}")
    for name, value in fam.model_values().items():
        _require(getattr(model, name) == value, f"model.{name}",
                 f"{getattr(model, name)!r} contradicts model.family={model.family} ({name}={value!r})")
    for flag in ("add_qkv_bias", "qk_layernorm"):
        _require(getattr(model, flag) == bool(fam.fixed.get(flag)), f"model.{flag}",
                 f"{getattr(model, flag)} contradicts model.family={model.family}")


def validate(config: RunConfig, *, world_size: Optional[int] = None) -> None:
    """Check everything knowable before start-up; ``world_size`` adds the batch-layout checks."""
    validate_values(config)
    validate_model(config.model, config.parallel, seq_length=config.seq_length)
    data = config.data
    _require(data.mode in ("monolingual", "cross-lingual", "hybrid", "mixed"), "data.mode",
             f"unknown mode {data.mode!r}")
    _require(0.0 <= data.alpha <= 1.0, "data.alpha", f"must lie in [0, 1], got {data.alpha}")
    _require(data.micro_batch_size >= 1, "data.micro_batch_size", "must be >= 1")
    if world_size is not None:
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
    _require(config.loss.temperature > 0, "loss.temperature", "must be > 0")
    _require(config.loss.num_hard_negatives >= 0, "loss.num_hard_negatives", "must be >= 0")
    margin = config.loss.false_negative_margin
    if margin is not None:
        _require(math.isfinite(margin) and -2.0 <= margin <= 2.0, "loss.false_negative_margin",
                 f"must be a finite cosine-score margin in [-2, 2], got {margin}")
    validate_matryoshka(config.loss, config.model)
    if config.model.lora is not None:
        _require(bool(config.checkpoint.init_from), "checkpoint.init_from",
                 "model.lora trains adapters on a frozen base: name the base checkpoint")
    _require(config.precision.dtype in ("fp32", "bf16", "fp16"), "precision.dtype",
             f"expected fp32, bf16 or fp16, got {config.precision.dtype!r}")
    if config.precision.fp8 is not None:
        _require(config.precision.fp8 in ("hybrid", "e4m3"), "precision.fp8",
                 f"expected hybrid or e4m3, got {config.precision.fp8!r}")
        _require(config.model.use_transformer_engine, "precision.fp8",
                 "fp8 needs model.use_transformer_engine=true")
        _require(config.precision.fp8_recipe in ("delayed", "tensorwise", "blockwise", "mxfp8"),
                 "precision.fp8_recipe", f"unknown recipe {config.precision.fp8_recipe!r}")
