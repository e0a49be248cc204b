"""Ranges sit on the fields they constrain (issue 27): ``Annotated[int, Bounds(...)]`` in the schema
is what validation checks, found through nested and optional sections, invisible to plain type
hints."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Optional

import pytest

from megatron_hybridir.config import ConfigError, load_config
from megatron_hybridir.config.ranges import Bounds, Range, ranges_of
from megatron_hybridir.config.schema import ModelConfig


@dataclasses.dataclass
class Inner:
    rate: Annotated[float, Bounds(0, 1, high_open=True)] = 0.5
    name: str = "x"


@dataclasses.dataclass
class Outer:
    count: Annotated[int, Bounds(1)] = 2
    inner: Inner = dataclasses.field(default_factory=Inner)
    extra: Optional[Inner] = None


def test_ranges_are_read_off_the_annotations_of_every_section():
    assert list(ranges_of(Outer)) == [Range("count", Bounds(1), integer=True),
                                      Range("inner.rate", Bounds(0, 1, high_open=True)),
                                      Range("extra.rate", Bounds(0, 1, high_open=True))]
    assert typing.get_type_hints(Outer)["count"] is int          # plain hints: the type alone


def test_the_schema_field_carries_its_range_and_load_checks_it():
    hints = typing.get_type_hints(ModelConfig, include_extras=True)
    assert Bounds(1) in hints["num_layers"].__metadata__
    with pytest.raises(ConfigError, match=r"model.num_layers: must be >= 1, got 0"):
        load_config(None, ["model.num_layers=0"])


def test_a_wrong_type_built_in_code_is_out_of_range_not_a_crash():
    """A config built in code skips the loader's coercion: 2.5 or True in an int field, or a string,
    is reported like any value out of range (it used to be a TypeError, or passed)."""
    from megatron_hybridir.config.ranges import check_bounds

    for bad in (2.5, True, "3"):
        with pytest.raises(ValueError, match=rf"^count: must be >= 1, got {bad!r}$".replace("(", r"\(")):
            check_bounds(Outer(count=bad))
    check_bounds(Outer(count=3, inner=Inner(rate=0)))       # an int in a float field is a number
