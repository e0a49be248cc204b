"""Typed configuration: dataclasses loaded from YAML with dotted ``a.b=value`` overrides.

Why it exists: every knob of a run is one dataclass field with a docstring-style comment, so a run is
fully described by a YAML file plus a few overrides, unknown keys fail loudly, and validation names
the failing field (``model.num_attention_heads``) instead of crashing deep inside Megatron-Core.

What it does not do: build models or process groups. ``model/builder.py`` turns these dataclasses
into Megatron-Core objects; ``runtime/distributed.py`` sets up process groups.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field."""


POOLING_TYPES = ("mean", "last", "first", "latent_attention")
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
    another run); ignored when the run directory already has a checkpoint to resume."""


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
        except (TypeError, ValueError):
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
        node[parts[-1]] = _parse_scalar(raw)
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
             f"{model.num_attention_heads} heads are not divisible by {groups} query groups")
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
    _require(model.pooling in POOLING_TYPES, "model.pooling",
             f"unknown pooling {model.pooling!r}; expected one of {list(POOLING_TYPES)}")
    _require(model.attention in ATTENTION_TYPES, "model.attention",
             f"unknown attention {model.attention!r}; expected one of {list(ATTENTION_TYPES)}")
    _require(model.recompute in ("none", "full", "selective"), "model.recompute",
             f"expected none, full or selective, got {model.recompute!r}")
    _require(model.architecture in ARCHITECTURES, "model.architecture",
             f"unknown architecture {model.architecture!r}; expected one of {list(ARCHITECTURES)}")
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
        _require(model.type_vocab_size == 0 and model.position_offset == 0, "model.type_vocab_size",
                 "token types and position offsets need model.architecture=bert")
    if model.projection_dim is not None:
        _require(model.projection_dim >= 1, "model.projection_dim", "must be >= 1")
    if model.pooling == "latent_attention":
        _require(model.hidden_size % model.latent_num_heads == 0, "model.latent_num_heads",
                 f"hidden_size {model.hidden_size} is not divisible by {model.latent_num_heads}")
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


def validate(config: RunConfig, *, world_size: Optional[int] = None) -> None:
    """Check everything knowable before start-up; ``world_size`` adds the batch-layout checks."""
    validate_model(config.model, config.parallel, seq_length=config.seq_length)
    data = config.data
    _require(data.mode in ("monolingual", "cross-lingual", "hybrid", "mixed"), "data.mode",
             f"unknown mode {data.mode!r}")
    _require(0.0 <= data.alpha <= 1.0, "data.alpha", f"must lie in [0, 1], got {data.alpha}")
    _require(data.micro_batch_size >= 1, "data.micro_batch_size", "must be >= 1")
    if world_size is not None:
        tp, pp = config.parallel.tensor_model_parallel_size, config.parallel.pipeline_model_parallel_size
        _require(world_size % (tp * pp) == 0, "parallel",
                 f"world size {world_size} is not divisible by TP x PP = {tp * pp}")
        dp = world_size // (tp * pp)
        _require(data.global_batch_size % (data.micro_batch_size * dp) == 0,
                 "data.global_batch_size",
                 f"{data.global_batch_size} is not divisible by data.micro_batch_size "
                 f"({data.micro_batch_size}) x data-parallel size ({dp})")
    _require(config.loss.temperature > 0, "loss.temperature", "must be > 0")
    _require(config.loss.num_hard_negatives >= 0, "loss.num_hard_negatives", "must be >= 0")
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
