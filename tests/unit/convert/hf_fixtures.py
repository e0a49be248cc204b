"""Tiny random HF checkpoints of each supported family, with a word-level tokenizer, built offline."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["<pad>", "<unk>", "</s>"] + [f"w{i}" for i in range(61)] + ["Query:", "Passage:"]

FAMILIES = {
    "llama": ("LlamaConfig", "LlamaModel", {}),
    "llama3": ("LlamaConfig", "LlamaForCausalLM",
               {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
                                    "rope_theta": 500000.0}, "max_position_embeddings": 16384}),
    "mistral": ("MistralConfig", "MistralModel", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2Model", {}),
    "qwen3": ("Qwen3Config", "Qwen3Model", {"head_dim": 8}),
}


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(str(folder))


def write_hf_model(folder: Path, family: str, seed: int = 0, shards: bool = False) -> Path:
    import transformers

    config_class, model_class, extra = FAMILIES[family]
    config = getattr(transformers, config_class)(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config)
    with torch.no_grad():                       # norms are ones at init: make them informative
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if "norm" in name else 0.0, 0.1)
    model.save_pretrained(str(folder), max_shard_size="20KB" if shards else "5GB")
    write_tokenizer(folder)
    return folder
