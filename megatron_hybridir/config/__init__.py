"""Typed configuration: dataclasses loaded from YAML with dotted ``a.b=value`` overrides.

Why it exists: every knob of a run is one dataclass field with a docstring, so a run is fully
described by a YAML file plus a few overrides, unknown keys fail loudly, and validation names the
failing field (``model.num_attention_heads``) instead of crashing deep inside Megatron-Core.

Layout: ``schema`` (the dataclasses, ``Literal`` option types, derived values such as
``ModelConfig.kv_heads``), ``loading`` (YAML + overrides -> dataclasses), ``presets`` (named sizes
applied under explicit fields), ``validation`` (ranges and cross-field rules), ``help`` (the field
reference ``--help`` prints, read from the schema's docstrings). This package re-exports the public
names, so ``from megatron_hybridir.config import RunConfig, load_config`` is the import to use.

What it does not do: build models or process groups. ``model/builder.py`` turns these dataclasses
into Megatron-Core objects; ``runtime/distributed.py`` sets up process groups.
"""

from megatron_hybridir.config.loading import (
    apply_overrides,
    build_config,
    from_dict,
    load_config,
    read_config,
    save_config,
    to_dict,
)
from megatron_hybridir.config.presets import PRESETS, apply_preset, preset
from megatron_hybridir.config.schema import (
    LORA_TARGETS,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    DistillationConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ParallelConfig,
    PrecisionConfig,
    RunConfig,
    TrainingConfig,
    embedding_dim,
)
from megatron_hybridir.config.validation import (
    _RANGES,
    validate,
    validate_lora,
    validate_matryoshka,
    validate_model,
    validate_paths,
    validate_values,
)

__all__ = [
    "PRESETS", "LORA_TARGETS", "CheckpointConfig", "ConfigError", "DataConfig", "DistillationConfig",
    "LoraConfig",
    "LossConfig", "ModelConfig", "OptimConfig", "ParallelConfig", "PrecisionConfig", "RunConfig",
    "TrainingConfig", "_RANGES", "apply_overrides", "apply_preset", "build_config", "embedding_dim",
    "from_dict", "load_config", "preset", "read_config", "save_config", "to_dict", "validate", "validate_lora",
    "validate_matryoshka", "validate_model", "validate_paths", "validate_values",
]
