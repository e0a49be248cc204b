"""Property-based test (hypothesis) of the config loader: random values for random fields, of every
type. Loading either fails with a ConfigError that starts with a field path and mentions the field
that was set, or succeeds with values inside their documented ranges — never a bare exception,
never a NaN, a negative count or a zero batch silently accepted."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megatron_hybridir.config import _MINIMUMS, ConfigError, RunConfig, load_config

def _leaf_fields(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


FIELDS = sorted(set(_leaf_fields(RunConfig)) - {"model.preset"})
VALUES = st.one_of(st.integers(-3, 3), st.integers(-10**6, 10**6),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([".nan", ".inf", "-.inf", "1e-3", "-0.0", "0", "2", "true", "null",
                                    "[1, 2]", "[]", "{a: 1}", "''", "mean", "hybrid", "x"]),
                   st.text(alphabet="ab1.-_ ", max_size=5))


def _yaml(value) -> str:
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else (".inf" if value == math.inf else
                                                 "-.inf" if value == -math.inf else repr(value))
    return str(value)


def _value(config, path):
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _floats(node):
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _floats(value)
        else:
            yield from (v for v in (value if isinstance(value, list) else [value]) if isinstance(v, float))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=2,
                unique_by=lambda t: t[0]))
def test_random_values_are_named_or_within_range(assignments):
    overrides = ["model.preset=tiny"] + [f"{path}={_yaml(value)}" for path, value in assignments]
    try:
        config = load_config(None, overrides)
    except ConfigError as err:
        message = str(err)
        head = message.split(":", 1)[0]
        assert head in FIELDS or head in {"parallel", "model"} or head.startswith("model.preset"), message
        named = [path for path, _ in assignments]
        # The message names a field that was set, or explains the clash with one of them.
        assert any(path in message or path.split(".")[-1] in message for path in named), message
        return
    for value in _floats(config):
        assert math.isfinite(value), (overrides, value)
    for path, lowest, optional in _MINIMUMS:
        value = _value(config, path)
        assert (value is None and optional) or value >= lowest, (overrides, path, value)
    assert config.optim.lr > 0 and 0 <= config.data.alpha <= 1 and config.loss.temperature > 0
