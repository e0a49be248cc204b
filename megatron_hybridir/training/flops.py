"""FLOPs of the embedding model, counted explicitly (Megatron's formula does not apply).

Why it exists: Megatron's FLOP count assumes a causal mask (half the attention scores, with flash
attention) and an LM head (2·s·h·V per sequence). An embedder has neither: attention is full
bidirectional and there are no logits. Per sequence of s tokens, one forward pass costs

    per layer:  2·s·h·d·(n_q + 2·n_kv)      QKV projection
              + 2·s·s·d·n_q · 2              scores QK^T and probabilities x V (full s x s)
              + 2·s·d·n_q·h                  output projection
              + 2·s·h·f · 3                  SwiGLU MLP (gate, up, down); BERT's GELU MLP: · 2
    head:       2·h·h (BERT pooler, if on) + 2·h·p (optional projection); pooling is negligible

Training multiplies by 3 (forward + backward, which costs two forwards); GradCache adds one more
forward (x4). Causal mode is counted the same: the dense-mask kernels compute all s x s scores.
"""

from __future__ import annotations

from megatron_hybridir.config import ModelConfig

# Dense bf16 peak per GPU (TFLOP/s) for MFU; keys are substrings of torch.cuda.get_device_name(),
# the first that matches wins (so the PCIe / NVL H100s come before the SXM default).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0, "B200": 2250.0}


def forward_flops_per_sequence(model: ModelConfig, seq_len: int) -> float:
    h, f, s = model.hidden_size, model.ffn_hidden_size, seq_len
    n_q = model.num_attention_heads
    n_kv, d = model.kv_heads, model.head_dim
    per_layer = (2 * s * h * d * (n_q + 2 * n_kv) + 2 * 2 * s * s * d * n_q
                 + 2 * s * d * n_q * h + 2 * s * h * f * (2 if model.architecture == "bert" else 3))
    head = (2 * h * model.projection_dim if model.projection_dim else 0) + (2 * h * h if model.pooler else 0)
    return float(model.num_layers * per_layer + head)


def training_flops(model: ModelConfig, *, sequences: int, seq_len: int, gradcache: bool) -> float:
    """FLOPs of one optimizer step over ``sequences`` rows padded to ``seq_len``."""
    return (4.0 if gradcache else 3.0) * sequences * forward_flops_per_sequence(model, seq_len)


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None
