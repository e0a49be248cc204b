"""Tiny random HF checkpoints of each supported family, with a word-level tokenizer, built offline."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["<pad>", "<unk>", "</s>"] + [f"w{i}" for i in range(61)] + ["Query:", "Passage:", "<s>"]

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
# BERT-style encoders. The XLM-R fixture is a MaskedLM checkpoint ("roberta." prefix, MLM head to
# skip) whose pad id 0 makes positions start at 1; the LaBSE-like BERT keeps its pooler.
ENCODERS = {
    "xlmr": ("XLMRobertaConfig", "XLMRobertaForMaskedLM",
             {"type_vocab_size": 1, "pad_token_id": 0, "layer_norm_eps": 1e-5,
              "max_position_embeddings": 40}),
    "labse": ("BertConfig", "BertModel",
              {"type_vocab_size": 2, "pad_token_id": 0, "layer_norm_eps": 1e-12,
               "max_position_embeddings": 40}),
}


def write_tokenizer(folder: Path, special_tokens: bool = False) -> None:
    """Word-level tokenizer; ``special_tokens`` wraps texts in <s> ... </s> like XLM-R's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if special_tokens:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", WORDS.index("<s>")), ("</s>", WORDS.index("</s>"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(str(folder))


def write_hf_model(folder: Path, family: str, seed: int = 0, shards: bool = False) -> Path:
    import transformers

    encoder = family in ENCODERS
    config_class, model_class, extra = (ENCODERS if encoder else FAMILIES)[family]
    sizes = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                 num_attention_heads=4)
    if not encoder:
        sizes.update(num_key_value_heads=2, rms_norm_eps=1e-6)
    config = getattr(transformers, config_class)(**sizes, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config)
    with torch.no_grad():                       # norms are ones at init: make them informative
        for name, p in model.named_parameters():
            is_norm = "norm" in name.lower()
            if is_norm or name.endswith("bias"):
                p.normal_(1.0 if is_norm and name.endswith("weight") else 0.0, 0.1)
    model.save_pretrained(str(folder), max_shard_size="20KB" if shards else "5GB")
    write_tokenizer(folder, special_tokens=encoder)
    return folder


def load_tool(name: str):
    """``main`` of ``tools/<name>.py`` (tools are scripts, not package modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, f"tools/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
