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

from megatron_hybridir.config import _RANGES, ConfigError, RunConfig, load_config

# Numeric fields whose rules are not a plain range: the sampler's own (data/sampler.check_settings)
# and the Matryoshka prefixes, bounded by the embedding size (validate_matryoshka); asserted below.
OTHER_RULES = {"data.alpha", "data.language_temperature", "data.source_weights",
               "loss.matryoshka_dims"}


def _section(annotation):
    """The dataclass of a section field, optional sections (model.lora) included."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)


def _leaf_fields(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = _section(hints[f.name])
        if section is not None:
            yield from _leaf_fields(section, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name]


def _numeric(annotation) -> bool:   # Any: a list of sizes or "full" (matryoshka_dims)
    return annotation in (int, float, typing.Any) or any(_numeric(a) for a in typing.get_args(annotation))


FIELDS = sorted({path for path, _ in _leaf_fields(RunConfig)} - {"model.preset"})


def test_every_numeric_field_has_a_rule():
    numeric = {path for path, hint in _leaf_fields(RunConfig) if _numeric(hint)}
    ranged = {rule.path for rule in _RANGES}
    assert {"model.lora.rank", "model.lora.alpha", "model.lora.dropout", "loss.matryoshka_weights",
            "loss.false_negative_margin"} <= ranged
    assert numeric - ranged == OTHER_RULES
    assert ranged <= numeric
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
        config = None if config is None else getattr(config, part)
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
    if any(path.startswith("model.lora.") for path, _ in assignments):
        overrides.insert(1, "checkpoint.init_from=base-not-converted-yet")   # LoRA needs a base
    try:
        config = load_config(None, overrides)
    except ConfigError as err:
        message = str(err)
        head = message.split(":", 1)[0].split("[")[0]   # list items: data.source_weights[0]
        assert head in FIELDS or head in {"parallel", "model"} or head.startswith("model.preset"), message
        named = [path for path, _ in assignments]
        # The message names a field that was set, or explains the clash with one of them.
        assert any(path in message or path.split(".")[-1] in message for path in named), message
        return
    for value in _floats(config):
        assert math.isfinite(value), (overrides, value)
    for rule in _RANGES:
        value = _value(config, rule.path)
        values = value if isinstance(value, list) else [value]
        assert (value is None and rule.optional) or all(rule.holds(v) for v in values), \
            (overrides, rule.path, value)
    data, loss = config.data, config.loss
    assert 0 <= data.alpha <= 1 and data.language_temperature >= 0
    assert data.source_weights is None or (min(data.source_weights) >= 0 and sum(data.source_weights) > 0)
    if loss.matryoshka_dims is not None:
        full = config.model.embedding_dim
        dims = [full if d == "full" else d for d in loss.matryoshka_dims]
        assert all(isinstance(d, int) and 1 <= d <= full for d in dims) and dims == sorted(set(dims))
