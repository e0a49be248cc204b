"""Loading a config: YAML and ``a.b=value`` overrides -> the dataclass tree, preset applied,
validated. Renamed fields still load under their old names, with a deprecation message.

Why it exists: every run, tool and test gets its config the same way, so unknown keys fail, types
are coerced once (``Literal`` choices, optional sections, lists), and every error names the field
path (``model.num_attention_heads``) and what was expected.

What it does not do: hold the schema (``config/schema.py``) or the cross-field rules
(``config/validation.py``), or read checkpoints: ``checkpoint.init_from`` replaces the model
section in the run layer (``training/run_config.py``), which builds on ``read_config`` and
``build_config`` here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml

from megatron_hybridir.config.presets import apply_preset
from megatron_hybridir.config.schema import ConfigError, ModelConfig, RunConfig
from megatron_hybridir.config.validation import choice_error, validate

# Fields renamed since runs were first written (section class -> old key -> new key): YAML files,
# run directories' config.yaml and checkpoints' stored configs written with the old key still load.
RENAMED: dict[type, dict[str, str]] = {
    ModelConfig: {"architecture": "layer_kind"},   # a layer kind, not a family (issue 27)
}


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
            raise choice_error(path, value, args)
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
        return _number(value, annotation, path)
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


def _number(value: Any, annotation: type, path: str) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    try:
        coerced = annotation(value)
    except (TypeError, ValueError, OverflowError):   # int(inf) overflows
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}") from None
    if annotation is int and isinstance(value, float) and coerced != value:
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    return coerced


def _renamed(cls: type, data: dict, prefix: str) -> dict:
    """``data`` with the old names of ``cls``'s renamed fields replaced by the new ones (warning
    once per key); both names set is an error."""
    for old, new in RENAMED.get(cls, {}).items():
        if old not in data:
            continue
        at = f"{prefix}." if prefix else ""
        if new in data:
            raise ConfigError(f"{at}{old} is the old name of {at}{new}, and both are set "
                              f"({old}={data[old]!r}, {new}={data[new]!r}); remove {at}{old}")
        warnings.warn(f"{at}{old} is deprecated and will be removed: it is now {at}{new} (same "
                      f"values); rename it in your config", FutureWarning, stacklevel=4)
        data = {(new if k == old else k): v for k, v in data.items()}
    return data


def upgrade_renamed(cls: type, data: dict, *, prefix: str = "") -> dict:
    """``data`` (a nested dict for ``cls``) with every renamed field under its new name, at every
    level; what is not a mapping is left for ``from_dict`` to report."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return data
    data = _renamed(cls, data, prefix)
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        annotation = hints.get(key)
        nested = [a for a in (annotation, *typing.get_args(annotation)) if dataclasses.is_dataclass(a)]
        out[key] = (upgrade_renamed(nested[0], value, prefix=f"{prefix}.{key}" if prefix else key)
                    if nested else value)
    return out


def from_dict(cls: type, data: dict, *, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    data = _renamed(cls, data, prefix)
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


def read_config(path: str | Path | None = None, overrides: list[str] | None = None,
                cls: type = RunConfig) -> dict:
    """The nested dict a config is built from: YAML (optional) with the overrides applied and
    renamed fields under their new names. Its keys are the fields the user wrote (presets and
    ``checkpoint.init_from`` fill in only the others)."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    return upgrade_renamed(cls, apply_overrides(data, list(overrides or [])))


def build_config(data: dict, cls: type = RunConfig, *, check: bool = True) -> Any:
    """The dataclass tree of ``read_config``'s dict, preset applied; validated unless ``check``
    is False (the run layer validates after ``checkpoint.init_from`` filled in the model)."""
    config = from_dict(cls, data)
    if hasattr(config, "model") and config.model.preset:
        config.model = apply_preset(config.model, data.get("model", {}))
    if check:
        validate(config)
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                cls: type = RunConfig) -> Any:
    """Read YAML (optional), apply overrides, build and validate the dataclass tree. A run that
    names ``checkpoint.init_from`` loads through ``training.run_config.load_run_config``, which
    also takes the model section from that checkpoint."""
    return build_config(read_config(path, overrides, cls), cls)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config (what the run really used) as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
