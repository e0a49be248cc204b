"""Config loading, overrides and start-up validation that names the failing field."""

from __future__ import annotations

import pytest

from megatron_hybridir.config import ConfigError, load_config, save_config


@pytest.mark.parametrize("overrides,message", [
    (["model.preset=tiny", "parallel.tensor_model_parallel_size=3"],
     "model.num_attention_heads: 4 heads are not divisible by parallel.tensor_model_parallel_size=3"),
    (["model.preset=tiny", "parallel.pipeline_model_parallel_size=3"],
     "model.num_layers: 2 layers are not divisible by parallel.pipeline_model_parallel_size=3"),
    (["model.preset=tiny", "model.pooling=max"],
     "model.pooling: unknown pooling 'max'"),
    (["model.preset=tiny", "seq_length=1024"],
     "seq_length: 1024 is longer than model.max_position_embeddings=512"),
    (["model.preset=tiny", "model.num_query_groups=4", "parallel.tensor_model_parallel_size=4",
      "model.num_attention_heads=8", "model.hidden_size=64", "model.ffn_hidden_size=130"],
     "model.ffn_hidden_size: 130 is not divisible"),
    (["model.preset=tiny", "model.attention=sliding"], "model.attention: expected bidirectional or causal, got 'sliding'"),
    (["model.preset=tiny", "parallel.sequence_parallel=true"],
     "parallel.sequence_parallel: needs tensor_model_parallel_size > 1"),
    (["model.preset=tiny", "precision.fp8=hybrid"],
     "precision.fp8: fp8 needs model.use_transformer_engine=true"),
    (["model.preset=nope"], "model.preset: unknown preset 'nope'"),
    (["model.num_layerz=2"], "model: unknown key(s) ['num_layerz']"),
    (["model.num_layers=two"], "model.num_layers: expected int, got 'two'"),
    (["loss.temperature=0"], "loss.temperature: must be > 0"),
])
def test_bad_configuration_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_yaml_preset_explicit_fields_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  preset: mistral-7b\n  num_layers: 4\nseq_length: 256\n")
    config = load_config(path, ["parallel.tensor_model_parallel_size=8", "model.pooling=last"])
    assert config.model.num_layers == 4  # explicit field beats the preset
    assert config.model.hidden_size == 4096 and config.model.num_query_groups == 8  # from preset
    assert config.model.pooling == "last"
    assert config.parallel.tensor_model_parallel_size == 8
    save_config(config, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == config
