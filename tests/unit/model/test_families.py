"""The family registry: presets, import, builder and export read one table; the family is
recorded, not guessed from flags."""

import pytest

from megatron_hybridir.config import ConfigError, ModelConfig, ParallelConfig, validate_model
from megatron_hybridir.convert.adapter import export_family as hf_architecture
from megatron_hybridir.convert.hf_import import model_config_from_hf
from megatron_hybridir.model import families
from megatron_hybridir.config.presets import PRESETS, preset


def test_every_preset_names_a_family_and_validates():
    for name in PRESETS:
        model = preset(name)
        validate_model(model, ParallelConfig(), seq_length=16)
        if name != "tiny":
            fam = families.get(model.family)
            assert name in fam.presets and model.layer_kind == fam.layers


@pytest.mark.parametrize("hf, family", [
    ({"model_type": "llama", "rope_theta": 10000.0}, "llama"),
    ({"model_type": "llama", "rope_theta": 500000.0}, "llama3"),
    ({"model_type": "mistral"}, "mistral"), ({"model_type": "qwen2"}, "qwen2"),
    ({"model_type": "qwen3", "head_dim": 8}, "qwen3"), ({"model_type": "bert"}, "bert"),
    ({"model_type": "xlm-roberta", "pad_token_id": 1}, "xlm-roberta")])
def test_import_records_the_family_and_export_writes_it(hf, family):
    sizes = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                 vocab_size=64, max_position_embeddings=64)
    model = model_config_from_hf({**sizes, **hf}, "config.json")
    assert model.family == family
    fam = hf_architecture(model)
    assert fam.name == family and fam.model_type == hf["model_type"]


def test_mistral_is_not_exported_as_llama():
    # Same flags as Llama: before the registry, export guessed "llama" from them.
    model = preset("mistral-7b")
    assert hf_architecture(model).model_class == "MistralModel"
    assert hf_architecture(ModelConfig()).model_class == "LlamaModel"    # built from scratch


def test_family_contradicting_its_flags_is_refused():
    with pytest.raises(ConfigError, match="model.add_qkv_bias: False contradicts model.family=qwen2"):
        validate_model(ModelConfig(family="qwen2"), ParallelConfig(), seq_length=16)
    with pytest.raises(ConfigError, match="model.family: unknown family 'gpt2'"):
        validate_model(ModelConfig(family="gpt2"), ParallelConfig(), seq_length=16)
