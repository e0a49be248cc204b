"""FLOPs of the embedding model, counted explicitly (Megatron's formula does not apply).

Why it exists: Megatron's FLOP count assumes a causal mask (half the attention scores, with flash
attention) and an LM head (2·s·h·V per sequence). An embedder has neither: attention is full
bidirectional and there are no logits. Per sequence of s tokens, one forward pass costs

    per layer:  2·s·h·d·(n_q + 2·n_kv)      QKV projection
              + 2·s·s·d·n_q · 2              scores QK^T and probabilities x V (full s x s)
              + 2·s·d·n_q·h                  output projection
              + 2·s·h·f · 3                  SwiGLU MLP (gate, up, down); BERT's GELU MLP: · 2
    head:       the pooling type's own count (``PoolingType.forward_flops``: 0 for mean / last /
                first, whose additions are negligible; latent attention's matmuls)
              + 2·h·h (BERT pooler, if on) + 2·h·p (optional projection)

Throughput is reported on real tokens (``real_token_flops``: each row at its own length, so
padding, which a packed batch does not compute, is never counted as useful work).

Full training multiplies by 3 (forward + backward, which costs two forwards: the input gradient
and the weight gradient of every matmul); GradCache adds one more forward (x4). Causal mode is
counted the same: the dense-mask kernels compute all s x s scores.

LoRA (``model.lora``) changes the backward: frozen base weights get no weight gradient, and no
input gradient is computed upstream of the first trainable tensor (the embeddings are frozen). Each
adapter adds 2·s·r·(in + out) to the forward of its linear and, in the backward, the gradients of
A and B, of the rank-r activation and (when something upstream trains) of its input. So a LoRA
step costs about 2x a forward, not 3x, and MFU is counted on that, not on full training's count.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from megatron_hybridir.config import ModelConfig
from megatron_hybridir.model.pooling import pooling_class

# Dense bf16 peak per GPU (TFLOP/s) for MFU; keys are substrings of torch.cuda.get_device_name(),
# the first that matches wins (so the PCIe / NVL H100s come before the SXM default).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0, "B200": 2250.0}


def _layer_linears(model: ModelConfig) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear of one transformer layer, keyed by LoRA target name."""
    h, f = model.hidden_size, model.ffn_hidden_size
    n_q, n_kv, d = model.num_attention_heads, model.kv_heads, model.head_dim
    gated = model.layer_kind != "bert"  # SwiGLU: fc1 holds gate and up
    return {"qkv": (h, d * (n_q + 2 * n_kv)), "proj": (d * n_q, h),
            "fc1": (h, f * (2 if gated else 1)), "fc2": (f, h)}


def _attention_core(model: ModelConfig, s: int) -> float:
    """QK^T and probabilities x V over the full s x s score matrix (no weights)."""
    return 2 * 2 * s * s * model.head_dim * model.num_attention_heads


def _head(model: ModelConfig, s: int) -> float:
    h = model.hidden_size
    return (pooling_class(model.pooling).forward_flops(model, s)
            + (2 * h * model.projection_dim if model.projection_dim else 0)
            + (2 * h * h if model.pooler else 0))


def forward_flops_per_sequence(model: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs of one sequence through the base model (adapters excluded)."""
    s = seq_len
    linears = sum(2 * s * i * o for i, o in _layer_linears(model).values())
    return float(model.num_layers * (linears + _attention_core(model, s)) + _head(model, s))


def _lora_step_flops_per_sequence(model: ModelConfig, s: int, gradcache: bool) -> float:
    """Forward + backward (+ GradCache's extra forward) of one sequence with frozen base weights.

    Walks the components in forward order; an input gradient is paid only once some tensor
    upstream trains (the embeddings never do under LoRA)."""
    lora = model.lora
    r, targets = lora.rank, set(lora.target_modules)
    forward = backward = 0.0
    upstream_trains = False
    linears, core = _layer_linears(model), _attention_core(model, s)   # the same in every layer
    for _ in range(model.num_layers):
        for name, (i, o) in linears.items():
            base, adapter = 2 * s * i * o, (2 * s * r * (i + o) if name in targets else 0)
            forward += base + adapter
            if upstream_trains:
                backward += base + (2 * s * r * i if adapter else 0)  # input gradients
            if adapter:
                backward += 2 * s * r * (i + 2 * o)  # dA, dB and the rank-r activation's gradient
                upstream_trains = True
            if name == "qkv":  # the attention core sits between qkv and proj
                forward += core
                backward += 2 * core if upstream_trains else 0
    head = _head(model, s)
    forward += head
    backward += (head if upstream_trains else 0) + (head if lora.train_head else 0)
    return forward * (2 if gradcache else 1) + backward


def training_flops(model: ModelConfig, *, sequences: int, seq_len: int, gradcache: bool) -> float:
    """FLOPs of one optimizer step over ``sequences`` rows padded to ``seq_len``."""
    if model.lora is not None:
        return float(sequences * _lora_step_flops_per_sequence(model, seq_len, gradcache))
    return (4.0 if gradcache else 3.0) * sequences * forward_flops_per_sequence(model, seq_len)


def real_token_flops(model: ModelConfig, *, row_lengths: Sequence[int], gradcache: bool) -> float:
    """FLOPs of one optimizer step counted on real tokens only: each row at its own length, so
    attention costs sum(s_i^2) whatever the padding or packing (a packed stream's attention
    computes exactly that, on TE's THD kernels and in the local spec's SegmentAttention)."""
    counts = Counter(int(n) for n in row_lengths)
    return float(sum(k * training_flops(model, sequences=1, seq_len=s, gradcache=gradcache)
                     for s, k in counts.items()))


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None
