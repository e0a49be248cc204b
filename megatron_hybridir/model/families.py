"""The model-family registry: everything presets, the model builder, HF import and HF export know
about Llama / Llama 3 / Mistral / Qwen2 / Qwen3 / XLM-R / BERT, in one table.

Why it exists: a family's knowledge used to be split over four modules (sizes in ``presets``, layer
settings in ``builder``, config keys and tensor rules in ``convert/mappings``, the HF classes and a
guess from flags in ``convert/hf_export``). A checkpoint now records its family (``model.family``)
and every consumer looks it up here, so a run started from Mistral weights exports as Mistral.
Adding a family is one ``Family(...)`` entry in ``FAMILIES`` (plus its presets in that entry).

Layer kinds: ``llama`` (pre-RMSNorm, SwiGLU, RoPE, no biases) and ``bert`` (post-LayerNorm, GELU,
biases, learned positions; ``model/encoder_layers.py``). A family picks one and may fix flags
(Qwen2's QKV bias, Qwen3's QK norm).

What it does not do: convert tensors (``convert/mappings.fuse`` / ``split`` interpret the rules) or
build modules (``model/builder``, which also holds each layer kind's TransformerConfig settings).
It imports neither torch nor the config, so the config loader reads presets from here cheaply and
without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class TensorRule:
    megatron: str                # local (TP=1) state-dict name, "{i}" = layer index
    hf: tuple[str, ...]          # HF AutoModel names (no "model." prefix)
    kind: str = "copy"           # copy | qkv | glu | vocab
    when: Optional[str] = None   # ModelConfig flag that must be true for the rule to apply


LAYER = "decoder.layers.{i}."
HF_LAYER = "layers.{i}."

LLAMA_RULES = (
    TensorRule("embedding.word_embeddings.weight", ("embed_tokens.weight",), "vocab"),
    TensorRule("decoder.final_layernorm.weight", ("norm.weight",)),
    TensorRule(LAYER + "input_layernorm.weight", (HF_LAYER + "input_layernorm.weight",)),
    TensorRule(LAYER + "self_attention.linear_qkv.weight",
               tuple(HF_LAYER + f"self_attn.{p}_proj.weight" for p in "qkv"), "qkv"),
    TensorRule(LAYER + "self_attention.linear_qkv.bias",
               tuple(HF_LAYER + f"self_attn.{p}_proj.bias" for p in "qkv"), "qkv", when="add_qkv_bias"),
    TensorRule(LAYER + "self_attention.q_layernorm.weight", (HF_LAYER + "self_attn.q_norm.weight",),
               when="qk_layernorm"),
    TensorRule(LAYER + "self_attention.k_layernorm.weight", (HF_LAYER + "self_attn.k_norm.weight",),
               when="qk_layernorm"),
    TensorRule(LAYER + "self_attention.linear_proj.weight", (HF_LAYER + "self_attn.o_proj.weight",)),
    TensorRule(LAYER + "pre_mlp_layernorm.weight", (HF_LAYER + "post_attention_layernorm.weight",)),
    TensorRule(LAYER + "mlp.linear_fc1.weight",
               (HF_LAYER + "mlp.gate_proj.weight", HF_LAYER + "mlp.up_proj.weight"), "glu"),
    TensorRule(LAYER + "mlp.linear_fc2.weight", (HF_LAYER + "mlp.down_proj.weight",)),
)

ENC = "encoder.layer.{i}."
BERT_RULES = (
    TensorRule("embedding.word_embeddings.weight", ("embeddings.word_embeddings.weight",), "vocab"),
    TensorRule("embedding.position_embeddings.weight", ("embeddings.position_embeddings.weight",)),
    TensorRule("embedding.tokentype_embeddings.weight", ("embeddings.token_type_embeddings.weight",)),
    TensorRule("embedding.layernorm.weight", ("embeddings.LayerNorm.weight",)),
    TensorRule("embedding.layernorm.bias", ("embeddings.LayerNorm.bias",)),
    *(TensorRule(LAYER + f"self_attention.linear_qkv.{p}",
                 tuple(ENC + f"attention.self.{n}.{p}" for n in ("query", "key", "value")), "qkv")
      for p in ("weight", "bias")),
    *(TensorRule(LAYER + f"{ours}.{p}", (ENC + f"{theirs}.{p}",))
      for ours, theirs in (("self_attention.linear_proj", "attention.output.dense"),
                           ("post_attention_layernorm", "attention.output.LayerNorm"),
                           ("mlp.linear_fc1", "intermediate.dense"),
                           ("mlp.linear_fc2", "output.dense"),
                           ("post_mlp_layernorm", "output.LayerNorm"))
      for p in ("weight", "bias")),
    TensorRule("head.pooler.dense.weight", ("pooler.dense.weight",), when="pooler"),
    TensorRule("head.pooler.dense.bias", ("pooler.dense.bias",), when="pooler"),
)

# HF config key -> ModelConfig field (first key present wins), per layer kind.
_SIZE_KEYS = {
    "num_layers": ("num_hidden_layers",),
    "hidden_size": ("hidden_size",),
    "ffn_hidden_size": ("intermediate_size",),
    "num_attention_heads": ("num_attention_heads",),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings",),
}
LLAMA_CONFIG_KEYS = {**_SIZE_KEYS, "num_query_groups": ("num_key_value_heads",),
                     "kv_channels": ("head_dim",), "layernorm_epsilon": ("rms_norm_eps",)}
BERT_CONFIG_KEYS = {**_SIZE_KEYS, "layernorm_epsilon": ("layer_norm_eps",),
                    "type_vocab_size": ("type_vocab_size",)}


def llama_shapes(model) -> dict[str, tuple[int, ...]]:
    h, heads = model.hidden_size, model.num_attention_heads
    groups, d = model.kv_heads, model.head_dim
    f = model.ffn_hidden_size
    per_layer = {"input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
                 "self_attn.q_proj.weight": (heads * d, h), "self_attn.k_proj.weight": (groups * d, h),
                 "self_attn.v_proj.weight": (groups * d, h), "self_attn.o_proj.weight": (h, heads * d),
                 "mlp.gate_proj.weight": (f, h), "mlp.up_proj.weight": (f, h),
                 "mlp.down_proj.weight": (h, f),
                 "self_attn.q_proj.bias": (heads * d,), "self_attn.k_proj.bias": (groups * d,),
                 "self_attn.v_proj.bias": (groups * d,), "self_attn.q_norm.weight": (d,),
                 "self_attn.k_norm.weight": (d,)}
    shapes = {"embed_tokens.weight": (model.vocab_size, h), "norm.weight": (h,)}
    for i in range(model.num_layers):
        shapes.update({f"layers.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


def bert_shapes(model) -> dict[str, tuple[int, ...]]:
    h, f = model.hidden_size, model.ffn_hidden_size
    per_layer = {}
    for name, (rows, cols) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                               "attention.self.value": (h, h), "attention.output.dense": (h, h),
                               "intermediate.dense": (f, h), "output.dense": (h, f)}.items():
        per_layer.update({f"{name}.weight": (rows, cols), f"{name}.bias": (rows,)})
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
        per_layer.update({f"{norm}.weight": (h,), f"{norm}.bias": (h,)})
    shapes = {"embeddings.word_embeddings.weight": (model.vocab_size, h),
              "embeddings.position_embeddings.weight": (model.max_position_embeddings, h),
              "embeddings.token_type_embeddings.weight": (model.type_vocab_size, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
              "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}
    for i in range(model.num_layers):
        shapes.update({f"encoder.layer.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


@dataclass(frozen=True)
class Family:
    name: str                             # model.family value
    model_type: str                       # HF config "model_type"
    config_class: str                     # transformers config class written on export
    model_class: str                      # "architectures" entry written on export
    layers: str = "llama"                 # layer kind: llama | bert (model.layer_kind)
    fixed: dict = field(default_factory=dict)   # ModelConfig values implied by the family
    rules: tuple[TensorRule, ...] = LLAMA_RULES
    config_keys: dict = field(default_factory=lambda: LLAMA_CONFIG_KEYS)
    shapes: Callable = llama_shapes       # ModelConfig -> {HF name: shape}
    body_prefixes: tuple[str, ...] = ("model.",)   # task-model wrappers around the body
    # Saved tensors that an embedding model does not use (LM / MLM heads, buffers).
    not_converted: tuple[str, ...] = ("lm_head.", "rotary_emb.inv_freq")
    # Tensors dropped unless a rule uses them (the BERT pooler, unless model.pooler).
    optional: tuple[str, ...] = ()
    presets: dict = field(default_factory=dict)   # preset name -> ModelConfig values
    # Preset name -> the public checkpoint (Hugging Face Hub id) whose architecture it is: a run of
    # such a preset starts from those weights (config/initial_weights.py).
    hub: dict = field(default_factory=dict)
    # Pooling a fresh sentence-transformers export uses when the source model had none recorded.
    default_pooling: str = "mean"

    def skipped(self, name: str) -> bool:
        return any(name.startswith(p) or name.endswith(p) for p in self.not_converted)

    def model_values(self) -> dict:
        """ModelConfig fields this family fixes (its name and layer kind included)."""
        return {"family": self.name, "layer_kind": self.layers, **self.fixed}


_BERT = dict(layers="bert", rules=BERT_RULES, config_keys=BERT_CONFIG_KEYS, shapes=bert_shapes,
             not_converted=("lm_head.", "cls.", "embeddings.position_ids",
                            "embeddings.token_type_ids"),
             optional=("pooler.",))

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "llama", "LlamaConfig", "LlamaModel",
           hub={"llama2-7b": "meta-llama/Llama-2-7b-hf"}, presets={
        "llama2-7b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=11008,
                          num_attention_heads=32, num_query_groups=32, vocab_size=32000,
                          max_position_embeddings=4096, layernorm_epsilon=1e-5)}),
    # Llama 3 is a Llama config with a large RoPE base (and Llama-3 RoPE scaling from 3.1 on).
    Family("llama3", "llama", "LlamaConfig", "LlamaModel",
           hub={"llama3-8b": "meta-llama/Meta-Llama-3-8B"}, presets={
        "llama3-8b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336,
                          num_attention_heads=32, num_query_groups=8, vocab_size=128256,
                          max_position_embeddings=8192, rotary_base=500000.0,
                          layernorm_epsilon=1e-5)}),
    Family("mistral", "mistral", "MistralConfig", "MistralModel",
           hub={"mistral-7b": "mistralai/Mistral-7B-v0.1"}, presets={
        "mistral-7b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336,
                           num_attention_heads=32, num_query_groups=8, vocab_size=32000,
                           max_position_embeddings=32768, rotary_base=1000000.0,
                           layernorm_epsilon=1e-5)}),
    Family("qwen2", "qwen2", "Qwen2Config", "Qwen2Model", fixed={"add_qkv_bias": True},
           hub={"qwen2-7b": "Qwen/Qwen2-7B", "qwen2.5-14b": "Qwen/Qwen2.5-14B"}, presets={
        "qwen2-7b": dict(num_layers=28, hidden_size=3584, ffn_hidden_size=18944,
                         num_attention_heads=28, num_query_groups=4, vocab_size=152064,
                         max_position_embeddings=32768, rotary_base=1000000.0,
                         layernorm_epsilon=1e-6),
        # Qwen2.5-14B (base): the 14B class of the size study (study/slurm.py).
        "qwen2.5-14b": dict(num_layers=48, hidden_size=5120, ffn_hidden_size=13824,
                            num_attention_heads=40, num_query_groups=8, vocab_size=152064,
                            max_position_embeddings=131072, rotary_base=1000000.0,
                            layernorm_epsilon=1e-5)}),
    Family("qwen3", "qwen3", "Qwen3Config", "Qwen3Model", fixed={"qk_layernorm": True},
           hub={"qwen3-32b": "Qwen/Qwen3-32B"}, presets={
        "qwen3-32b": dict(num_layers=64, hidden_size=5120, ffn_hidden_size=25600,
                          num_attention_heads=64, num_query_groups=8, kv_channels=128,
                          vocab_size=151936, max_position_embeddings=40960,
                          rotary_base=1000000.0, layernorm_epsilon=1e-6)}),
    # RoBERTa-style positions start after the padding index (set from pad_token_id on import).
    Family("xlm-roberta", "xlm-roberta", "XLMRobertaConfig", "XLMRobertaModel",
           body_prefixes=("roberta.",), **_BERT,
           hub={"xlmr-base": "FacebookAI/xlm-roberta-base", "xlmr-large": "FacebookAI/xlm-roberta-large"},
           presets={
               "xlmr-base": dict(num_layers=12, hidden_size=768, ffn_hidden_size=3072,
                                 num_attention_heads=12, vocab_size=250002,
                                 max_position_embeddings=514, position_offset=2,
                                 type_vocab_size=1, layernorm_epsilon=1e-5),
               "xlmr-large": dict(num_layers=24, hidden_size=1024, ffn_hidden_size=4096,
                                  num_attention_heads=16, vocab_size=250002,
                                  max_position_embeddings=514, position_offset=2,
                                  type_vocab_size=1, layernorm_epsilon=1e-5)}),
    Family("bert", "bert", "BertConfig", "BertModel", body_prefixes=("bert.",), **_BERT,
           hub={"labse": "sentence-transformers/LaBSE"}, presets={
        "labse": dict(num_layers=12, hidden_size=768, ffn_hidden_size=3072,
                      num_attention_heads=12, vocab_size=501153, max_position_embeddings=512,
                      type_vocab_size=2, layernorm_epsilon=1e-12, pooling="first", pooler=True)}),
)}



def get(name: str, *, where: str = "model.family") -> Family:
    if name not in FAMILIES:
        raise KeyError(f"{where}: unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_for_hf(hf_config: dict) -> Optional[Family]:
    """The family of an HF ``config.json`` (None when unsupported). Llama configs with a RoPE
    base of 500000 or more are Llama 3 (its tokenizer and RoPE scaling differ from Llama 2's)."""
    # The registry is the map: the family named like the model type. Families sharing a model
    # type under another name are its variants, told apart below (Llama 3 checkpoints say "llama").
    model_type = hf_config.get("model_type")
    name = next((f.name for f in FAMILIES.values() if f.name == f.model_type == model_type), None)
    if name == "llama":
        params = hf_config.get("rope_parameters") or {}
        theta = hf_config.get("rope_theta", params.get("rope_theta", 10000.0))
        if float(theta) >= 500000.0:
            name = "llama3"
    return FAMILIES.get(name) if name else None


def family_of(model) -> Family:
    """The family a ModelConfig belongs to: the recorded ``model.family``; configs written before
    families were recorded fall back to their layer kind's base family (llama / bert, or XLM-R
    when positions are RoBERTa-style)."""
    if model.family:
        return get(model.family)
    if model.layer_kind == "bert":
        return FAMILIES["xlm-roberta" if model.position_offset else "bert"]
    if model.qk_layernorm:
        return FAMILIES["qwen3"]
    if model.add_qkv_bias:
        return FAMILIES["qwen2"]
    return FAMILIES["llama"]


def pretrained_checkpoints() -> dict[str, str]:
    """Preset name -> Hugging Face Hub id of the public checkpoint it is the architecture of
    (every preset but ``tiny``)."""
    return {name: hub for fam in FAMILIES.values() for name, hub in fam.hub.items()}


def all_presets() -> dict[str, dict]:
    """Preset name -> ModelConfig values (the family's fixed values included)."""
    out = {"tiny": dict(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                        num_query_groups=2, vocab_size=256, max_position_embeddings=512,
                        make_vocab_size_divisible_by=8)}
    for fam in FAMILIES.values():
        for name, values in fam.presets.items():
            out[name] = {**fam.model_values(), **values}
    return out
