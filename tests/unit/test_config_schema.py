"""Derived values live on the schema (issue 20): ``ModelConfig.kv_heads`` / ``head_dim`` /
``embedding_dim``, and the sampler's settings derived from the data section by one method whose
rules (``data/sampler.check_settings``) are written once for both."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_hybridir.config import ConfigError, DataConfig, ModelConfig, load_config, preset
from megatron_hybridir.data.sampler import SamplerConfig


def test_kv_heads_and_head_dim():
    assert (ModelConfig(hidden_size=64, num_attention_heads=4).kv_heads,
            ModelConfig(hidden_size=64, num_attention_heads=4).head_dim) == (4, 16)   # MHA
    tiny = preset("tiny")
    assert (tiny.kv_heads, tiny.head_dim) == (2, 16)                                  # GQA
    qwen3 = preset("qwen3-32b")   # explicit head_dim 128, not 5120 / 64 = 80
    assert (qwen3.kv_heads, qwen3.head_dim) == (8, 128)
    assert (preset("tiny", projection_dim=32).embedding_dim, tiny.embedding_dim) == (32, 64)


def test_sampler_config_carries_every_shared_field():
    data = DataConfig(mode="cross-lingual", alpha=0.25, language_choice="example",
                      language_temperature=2.0, source_weights=[1.0, 3.0], global_batch_size=12)
    sampler = data.sampler_config(seed=7)
    shared = {f.name for f in dataclasses.fields(SamplerConfig)} - {"seed"}
    assert shared <= {f.name for f in dataclasses.fields(DataConfig)}
    for name in shared - {"source_weights"}:
        assert getattr(sampler, name) == getattr(data, name), name
    assert sampler.source_weights == (1.0, 3.0) and sampler.seed == 7
    assert DataConfig().sampler_config(seed=1).source_weights is None


@pytest.mark.parametrize("field, value, message", [
    ("alpha", 1.5, "alpha: must lie in [0, 1], got 1.5"),
    ("language_temperature", -1.0, "language_temperature: must be >= 0, got -1.0"),
    ("source_weights", [0.0, 0.0], "source_weights: weights must be >= 0 and not all 0, got [0.0, 0.0]"),
])
def test_sampler_rules_are_one_set_for_the_config_and_the_sampler(field, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.preset=tiny", f"data.{field}={value}"])
    assert str(err.value) == f"data.{message}"
    with pytest.raises(ValueError) as err:
        SamplerConfig(**{field: tuple(value) if isinstance(value, list) else value})
    assert str(err.value) == f"sampler.{message}"


def test_choice_fields_are_checked_for_a_config_built_in_code():
    from megatron_hybridir.config import RunConfig, validate

    config = RunConfig(model=preset("tiny", recompute="sometimes"))
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert str(err.value) == "model.recompute: expected none, full or selective, got 'sometimes'"
