"""Named architecture presets (sizes of public checkpoints), applied under explicit config fields.

Why it exists: a 7B or 30B recipe should say ``model.preset: mistral-7b`` rather than copy a dozen
numbers, and tests need the ``tiny`` preset (2 layers, hidden 64). Values are the public
``config.json`` values of each family; the HF import (checkpoint conversion) reads the real file.
"""

from __future__ import annotations

import dataclasses

from megatron_hybridir.config import ConfigError, ModelConfig

PRESETS: dict[str, dict] = {
    "tiny": dict(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                 num_query_groups=2, vocab_size=256, max_position_embeddings=512,
                 make_vocab_size_divisible_by=8),
    "llama2-7b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=11008,
                      num_attention_heads=32, num_query_groups=32, vocab_size=32000,
                      max_position_embeddings=4096, layernorm_epsilon=1e-5),
    "llama3-8b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336,
                      num_attention_heads=32, num_query_groups=8, vocab_size=128256,
                      max_position_embeddings=8192, rotary_base=500000.0, layernorm_epsilon=1e-5),
    "mistral-7b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336,
                       num_attention_heads=32, num_query_groups=8, vocab_size=32000,
                       max_position_embeddings=32768, rotary_base=1000000.0,
                       layernorm_epsilon=1e-5),
    "qwen2-7b": dict(num_layers=28, hidden_size=3584, ffn_hidden_size=18944,
                     num_attention_heads=28, num_query_groups=4, vocab_size=152064,
                     max_position_embeddings=32768, rotary_base=1000000.0, add_qkv_bias=True,
                     layernorm_epsilon=1e-6),
    # Qwen2.5-14B (base): the 14B class of the size study (study/slurm.py).
    "qwen2.5-14b": dict(num_layers=48, hidden_size=5120, ffn_hidden_size=13824,
                        num_attention_heads=40, num_query_groups=8, vocab_size=152064,
                        max_position_embeddings=131072, rotary_base=1000000.0, add_qkv_bias=True,
                        layernorm_epsilon=1e-5),
    "qwen3-32b": dict(num_layers=64, hidden_size=5120, ffn_hidden_size=25600,
                      num_attention_heads=64, num_query_groups=8, kv_channels=128,
                      vocab_size=151936, max_position_embeddings=40960, rotary_base=1000000.0,
                      qk_layernorm=True, layernorm_epsilon=1e-6),
    # BERT-style encoders of the hybrid-batch paper (post-LN; see model/encoder_layers.py).
    "xlmr-base": dict(architecture="bert", num_layers=12, hidden_size=768, ffn_hidden_size=3072,
                      num_attention_heads=12, vocab_size=250002, max_position_embeddings=514,
                      position_offset=2, type_vocab_size=1, layernorm_epsilon=1e-5),
    "xlmr-large": dict(architecture="bert", num_layers=24, hidden_size=1024, ffn_hidden_size=4096,
                       num_attention_heads=16, vocab_size=250002, max_position_embeddings=514,
                       position_offset=2, type_vocab_size=1, layernorm_epsilon=1e-5),
    "labse": dict(architecture="bert", num_layers=12, hidden_size=768, ffn_hidden_size=3072,
                  num_attention_heads=12, vocab_size=501153, max_position_embeddings=512,
                  type_vocab_size=2, layernorm_epsilon=1e-12, pooling="first", pooler=True),
}


def apply_preset(model: ModelConfig, explicit: dict) -> ModelConfig:
    """Return ``model`` with the preset's values for every field the user did not set."""
    if model.preset not in PRESETS:
        raise ConfigError(f"model.preset: unknown preset {model.preset!r}; "
                          f"known: {sorted(PRESETS)}")
    values = {k: v for k, v in PRESETS[model.preset].items() if k not in explicit}
    return dataclasses.replace(model, **values)


def preset(name: str, **overrides) -> ModelConfig:
    """A ModelConfig from a preset with keyword overrides (for tests and tools)."""
    return apply_preset(ModelConfig(preset=name, **overrides), overrides)
