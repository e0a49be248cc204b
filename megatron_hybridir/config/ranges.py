"""The allowed values of a numeric config field, written on the field itself.

Why it exists: a field's range is part of its definition, so it sits in its annotation in
``config/schema.py`` (``num_layers: Annotated[int, Bounds(1)] = 2``) beside its type, default and
docstring, instead of a separate table that a new field can miss. ``config/validation.py`` walks the
schema for them (``ranges_of``) and checks every one at load. ``typing.get_type_hints`` without
``include_extras`` drops the annotation, so everything else sees the plain type.

What it does not do: rules between fields (``config/validation.py``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterator, NamedTuple, Optional


class Bounds(NamedTuple):
    """Allowed values of one numeric field (each element, for a list field)."""

    low: float
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False     # None allowed (an optional field, or one in an optional section)
    text: Optional[str] = None  # the message, where a bare range would not explain the field

    def holds(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def message(self, v: float) -> str:
        if self.text:
            return f"{self.text}, got {v!r}"
        if self.high is None:
            return f"must be {'>' if self.low_open else '>='} {self.low}, got {v!r}"
        return (f"must lie in {'(' if self.low_open else '['}{self.low}, {self.high}"
                f"{')' if self.high_open else ']'}, got {v!r}")


# A count or size: an integer >= 1 (the evaluation and mining settings' wording).
COUNT = Bounds(1, text="expected an integer >= 1")
OPTIONAL_COUNT = COUNT._replace(optional=True)


class Range(NamedTuple):
    """A field's bounds with its dotted path (what validation checks and names); ``integer``: the
    field is an ``int`` (a float or a bool there is out of range too)."""

    path: str
    bounds: Bounds
    integer: bool = False

    def holds(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if self.integer else (int, float)):
            return False              # a config built in code skips the loader's coercion
        return self.bounds.holds(v)

    def message(self, v: float) -> str:
        return self.bounds.message(v)

    @property
    def optional(self) -> bool:
        return self.bounds.optional


def _section(annotation) -> Optional[type]:
    if dataclasses.is_dataclass(annotation):
        return annotation
    return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)


def ranges_of(cls: type, prefix: str = "") -> Iterator[Range]:
    """Every field of ``cls`` (sections expanded, in field order) whose annotation carries
    :class:`Bounds`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    plain = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        section = _section(plain[f.name])
        if section is not None:
            yield from ranges_of(section, f"{prefix}{f.name}.")
            continue
        base = plain[f.name]
        base = next((a for a in typing.get_args(base) if a is not type(None)), base) \
            if typing.get_origin(base) in (typing.Union, types.UnionType) else base
        base = (typing.get_args(base) or (base,))[0] if typing.get_origin(base) is list else base
        for extra in getattr(annotation, "__metadata__", ()):
            if isinstance(extra, Bounds):
                yield Range(f"{prefix}{f.name}", extra, integer=base is int)


def check_bounds(node: Any, prefix: str = "", error: type[Exception] = ValueError) -> None:
    """Every :class:`Bounds` of ``node``'s dataclass (sections included) holds for its value
    (each element, for a list); else ``error("<prefix><path>: <what was expected>, got <value>")``.
    None is accepted only where the bounds are optional."""
    for rule in ranges_of(type(node)):
        *sections, leaf = rule.path.split(".")
        parent = node
        for part in sections:
            parent = None if parent is None else getattr(parent, part)
        if parent is None:
            continue                  # an optional section that is unset: nothing to check
        value, path = getattr(parent, leaf), prefix + rule.path
        if value is None:
            if not rule.optional:
                raise error(f"{path}: must be set")
            continue
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if not rule.holds(v):
                raise error(f"{path if i is None else f'{path}[{i}]'}: {rule.message(v)}")
