"""Turn the typed config into Megatron-Core objects: TransformerConfig, specs, model chunks.

Why it exists: it is the one place that maps our config fields onto Megatron-Core's
TransformerConfig and decides, from the pipeline position, which stage gets the embedding and which
the pooling head. Model code stays free of process-group logic.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_hybridir.config import (
    ConfigError, LossConfig, ModelConfig, ParallelConfig, PrecisionConfig)
from megatron_hybridir.model import lora
from megatron_hybridir.model.embedding_model import EmbeddingModel
from megatron_hybridir.model.layer_specs import (
    embedding_block_spec, fused_softmax_kernels_available, mask_layout, resolve_use_te)
from megatron_hybridir.model.pooling import pooling_class
from megatron_hybridir.model.pooling.head import EmbeddingHead

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# What distinguishes the two layer kinds (model.layer_kind) inside Megatron-Core's
# TransformerConfig.
LAYER_KINDS = {
    "llama": dict(normalization="RMSNorm", gated_linear_unit=True, activation_func=F.silu,
                  add_bias_linear=False),
    # BERT / XLM-R / LaBSE: exact (erf) GELU as in their HF configs ("gelu"), bias everywhere.
    "bert": dict(normalization="LayerNorm", gated_linear_unit=False, activation_func=F.gelu,
                 add_bias_linear=True),
}


def padded_vocab_size(vocab_size: int, *, divisible_by: int, tp: int) -> int:
    """Embedding rows after Megatron's padding (rows are split evenly across TP ranks)."""
    multiple = divisible_by * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple


def builds_on_gpu() -> bool:
    """True when models are built straight onto this rank's GPU.

    Not under ``with torch.device("meta")`` (the converters' shape-only skeletons): Megatron's
    GPU initialisation passes ``device=current_device()`` explicitly, which would override the meta
    context and allocate the whole model on the GPU.
    """
    return torch.cuda.is_available() and torch.get_default_device().type != "meta"


def transformer_config(model: ModelConfig, parallel: ParallelConfig,
                       precision: Optional[PrecisionConfig] = None) -> TransformerConfig:
    """Megatron-Core TransformerConfig for a Llama-style (RMSNorm, SwiGLU, RoPE, GQA) stack or a
    BERT-style (post-LayerNorm, GELU, biases) encoder."""
    precision = precision or PrecisionConfig()
    dtype = _DTYPES[precision.dtype]
    on_gpu = builds_on_gpu()
    bert = model.layer_kind == "bert"
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.kv_channels,
        layernorm_epsilon=model.layernorm_epsilon,
        **LAYER_KINDS[model.layer_kind],
        add_qkv_bias=model.add_qkv_bias or bert,
        qk_layernorm=model.qk_layernorm,
        hidden_dropout=model.hidden_dropout,
        attention_dropout=model.attention_dropout,
        init_method_std=model.init_method_std,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=precision.dtype == "bf16",
        fp16=precision.dtype == "fp16",
        fp8=precision.fp8,
        fp8_recipe=precision.fp8_recipe,
        # Fused CUDA kernels do not exist on CPU; on GPU Megatron picks them when these are True.
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=on_gpu and fused_softmax_kernels_available(),
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        use_cpu_initialization=not on_gpu,
        recompute_granularity=None if model.recompute == "none" else model.recompute,
        recompute_method="uniform" if model.recompute == "full" else None,
        recompute_num_layers=1 if model.recompute == "full" else None,
    )


def build_head(model: ModelConfig, loss: Optional[LossConfig] = None) -> EmbeddingHead:
    """The pooling head of the last pipeline stage."""
    learnable = loss.temperature if (loss is not None and loss.learnable_temperature) else None
    return EmbeddingHead(model, learnable_temperature=learnable)


def build_model(model: ModelConfig, parallel: ParallelConfig, *,
                precision: Optional[PrecisionConfig] = None, loss: Optional[LossConfig] = None,
                pre_process: Optional[bool] = None, post_process: Optional[bool] = None,
                vp_stage: Optional[int] = None, vocab_rows: Optional[int] = None) -> EmbeddingModel:
    """One model chunk for this rank's pipeline position (or the given one).

    ``vocab_rows``: the embedding table's row count (the whole table, all TP ranks), when it is
    fixed by something else than this run's padding rule: a checkpoint being read or written for
    another TP layout (the converters). Default: ``model.vocab_size`` padded by
    ``model.make_vocab_size_divisible_by`` and the TP size.

    Requires Megatron's parallel state to be initialised (``runtime.distributed``).
    """
    config = transformer_config(model, parallel, precision)
    use_te = resolve_use_te(model.use_transformer_engine)
    if config.fp8 and not use_te:
        raise ConfigError(f"precision.fp8={config.fp8!r} runs through Transformer Engine, which is "
                          f"not importable here; install it (pip install -e '.[gpu]') or unset "
                          f"precision.fp8")
    causal = model.attention == "causal"
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
    head = build_head(model, loss) if post_process else None
    bert = model.layer_kind == "bert"
    block_spec = embedding_block_spec(config, causal=causal, qk_layernorm=model.qk_layernorm,
                                      use_te=use_te, vp_stage=vp_stage, post_norm=bert)
    if model.lora is not None:
        block_spec = lora.lora_block_spec(block_spec, rank=model.lora.rank, alpha=model.lora.alpha,
                                          dropout=model.lora.dropout,
                                          targets=model.lora.target_modules)
    if vocab_rows is None:
        vocab_rows = padded_vocab_size(model.vocab_size, divisible_by=model.make_vocab_size_divisible_by,
                                       tp=parallel.tensor_model_parallel_size)
    elif vocab_rows < model.vocab_size or vocab_rows % parallel.tensor_model_parallel_size:
        raise ConfigError(f"vocab_rows={vocab_rows}: an embedding table needs at least "
                          f"model.vocab_size={model.vocab_size} rows, split evenly over "
                          f"{parallel.tensor_model_parallel_size} tensor-parallel ranks")
    embedder = EmbeddingModel(
        config,
        block_spec=block_spec,
        vocab_size=vocab_rows,
        max_sequence_length=model.max_position_embeddings,
        head=head,
        mask_layout=mask_layout(causal=causal, use_te=use_te),
        packed_attention="thd" if use_te else "segments",
        positions="learned" if bert else "rope",
        num_tokentypes=model.type_vocab_size,
        position_offset=model.position_offset,
        rotary_base=model.rotary_base,
        rope_scaling_factor=model.rope_scaling_factor,
        pre_process=pre_process,
        post_process=post_process,
        vp_stage=vp_stage,
    )
    if model.lora is not None:
        lora.freeze_base(embedder, train_head=model.lora.train_head)
    if config.params_dtype != torch.float32:
        embedder.to(config.params_dtype)
    if builds_on_gpu():
        # Megatron's layers are already there; torch norms, rotary buffers and the pooling head
        # are not (Megatron's own training moves every chunk the same way after building it).
        embedder.cuda(torch.cuda.current_device())
    return embedder


def build_model_chunks(model: ModelConfig, parallel: ParallelConfig, **kwargs) -> list[EmbeddingModel]:
    """All model chunks of this rank: one, or ``virtual_pipeline_model_parallel_size`` of them."""
    vpp = parallel.virtual_pipeline_model_parallel_size
    if vpp is None:
        return [build_model(model, parallel, **kwargs)]
    return [build_model(model, parallel, vp_stage=i, **kwargs) for i in range(vpp)]


def count_parameters(model: ModelConfig, *, include_head: bool = True) -> int:
    """Exact parameter count of the unsharded model (embedding padded to the TP=1 size)."""
    h, f, layers = model.hidden_size, model.ffn_hidden_size, model.num_layers
    heads = model.num_attention_heads
    groups, d = model.kv_heads, model.head_dim
    vocab = padded_vocab_size(model.vocab_size, divisible_by=model.make_vocab_size_divisible_by,
                              tp=1)
    qkv_out = d * (heads + 2 * groups)
    if model.layer_kind == "bert":
        # biases on every linear, two LayerNorms (weight + bias) per layer, embedding LayerNorm
        per_layer = (h * qkv_out + qkv_out) + (heads * d * h + h) + (h * f + f) + (f * h + h) + 4 * h
        embeddings = (vocab + model.max_position_embeddings + model.type_vocab_size) * h + 2 * h
        total = embeddings + layers * per_layer
    else:
        qkv = h * qkv_out + (qkv_out if model.add_qkv_bias else 0)
        attn = qkv + heads * d * h + (2 * d if model.qk_layernorm else 0)
        mlp = 2 * h * f + f * h
        per_layer = attn + mlp + 2 * h  # two RMSNorm weights
        total = vocab * h + layers * per_layer + h  # + final norm
    if include_head:
        if model.pooler:
            total += h * h + h
        total += pooling_class(model.pooling).parameter_count(model)
        if model.projection_dim:
            total += h * model.projection_dim
    return total
