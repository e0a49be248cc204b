"""Command-line flags made from a settings dataclass, loaded through the one typed loader.

Why it exists: a tool that declares each field's flag, type and default beside its dataclass falls
behind it (the mining CLI had no ``--nprobe``, ``--ef-search``, ``--nlist``, ``--hnsw-m`` or
``--normalize`` after the dataclass gained them). Here every field of the dataclass becomes a
``--field-name`` flag (help: the docstring under the field; choices from a ``Literal``; ``--x`` /
``--no-x`` for booleans; the dataclass's default shown, never re-stated), and what the flags give,
an optional YAML file (``--config``) and ``a.b=value`` overrides are merged (YAML < flags <
overrides) and built by ``config.loading.from_dict``: the coercion and the field-naming errors of
training configs.

What it does not do: nested sections as flags (they take ``a.b=value`` overrides), or the owner's
cross-field rules (each tool still calls its own validation).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

import yaml

from megatron_hybridir.config.help import field_docs
from megatron_hybridir.config.loading import apply_overrides, from_dict
from megatron_hybridir.config.schema import ConfigError


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _base(annotation: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, *,
                        skip: Iterable[str] = ()) -> None:
    """A ``--field-name`` flag for every field of ``cls`` but those in ``skip``. Flags left out of
    a command line are absent from its namespace (not set to the default), so the YAML file and
    the dataclass's defaults apply to them."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        base = _base(hints[field.name])
        text = docs.get(field.name, "")
        if _required(field):
            text += " (required)"
        elif _default(field) is not None:          # None: the docstring says what happens
            text += f" (default: {_default(field)!r})"
        kwargs: dict[str, Any] = dict(dest=field.name, default=argparse.SUPPRESS, help=text.strip())
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) in (list, tuple):
            kwargs["nargs"] = "+" if _required(field) else "*"
        elif typing.get_origin(base) is Literal:
            kwargs["choices"] = list(typing.get_args(base))
        parser.add_argument(flag_name(field.name), **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and positional ``key=value`` overrides."""
    parser.add_argument("--config", help="YAML file of these settings (flags, then key=value "
                                         "overrides, take precedence over it)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings as field=value (values parsed as YAML)")


def load_dataclass(cls: type, args: argparse.Namespace, *, config: Optional[str | Path] = None,
                   overrides: Iterable[str] = (), extra: Optional[dict] = None) -> Any:
    """``cls`` from YAML ``config``, then the flags present in ``args`` and ``extra``, then
    ``overrides``; a required field given nowhere is an error naming its flag."""
    data = (yaml.safe_load(Path(config).read_text()) or {}) if config else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{config}: expected a mapping of {cls.__name__} fields, got "
                          f"{type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    data.update({name: getattr(args, name) for name in names if hasattr(args, name)})
    data.update(extra or {})
    data = apply_overrides(data, list(overrides))
    missing = [f.name for f in dataclasses.fields(cls) if _required(f) and f.name not in data]
    if missing:
        raise ConfigError("missing required setting(s): " + ", ".join(
            f"{name} ({flag_name(name)}, or {name}=... / in --config)" for name in missing))
    return from_dict(cls, data)
