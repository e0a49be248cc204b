"""Our side of the THD contract with Megatron-Core and Transformer Engine, on CPU.

On GPU a packed batch runs through ``PackedSeqParams(qkv_format="thd")``: Megatron squeezes q/k/v
to [t, heads, dim], applies the THD RoPE per ``cu_seqlens`` row and hands them to TE's attention,
which keeps each row to itself (docs/gpu-results.md lists the GPU runs). Here TE's kernel is
replaced by a reference THD attention written in torch (per-row softmax), so everything else of the
``thd`` path — our PackedSeqParams, Megatron's squeeze / RoPE / reshape, the tail segment, the
unpacking for pooling — runs and must give the padded batch's embeddings.
"""

from __future__ import annotations

import math

import pytest
import torch

from megatron_hybridir.data.packing import pack_batch
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model import packing


class ReferenceTHDAttention(torch.nn.Module):
    """What TE's DotProductAttention computes for qkv_format="thd": q/k/v [t, heads, dim] ->
    [t, heads * dim], attention inside each cu_seqlens row (causal inside it when asked)."""

    def __init__(self, *, causal: bool, calls: list):
        super().__init__()
        self.causal, self.calls = causal, calls

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        assert attention_mask is None and packed_seq_params.qkv_format == "thd"
        assert query.dim() == 3, "Megatron squeezes the batch dimension for thd"
        self.calls.append(packed_seq_params)
        cu = packed_seq_params.cu_seqlens_q.tolist()
        groups = query.size(1) // key.size(1)
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
        out = []
        for start, end in zip(cu, cu[1:]):
            q, k, v = (x[start:end].transpose(0, 1) for x in (query, key, value))  # [n, s, d]
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
            if self.causal:
                s = end - start
                scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -1e9)
            out.append((scores.softmax(-1) @ v).transpose(0, 1).reshape(end - start, -1))
        return torch.cat(out)


@pytest.mark.parametrize("architecture,attention", [("llama", "bidirectional"),
                                                    ("llama", "causal"), ("bert", "bidirectional")])
def test_thd_path_equals_padded_embeddings(build_tiny, architecture, attention):
    extra = (dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
                  position_offset=2, type_vocab_size=2) if architecture == "bert" else {})
    model = build_tiny(attention=attention, pooling="last", **extra)
    batch = random_token_batch(num_queries=3, num_negatives=1, seq_length=12, vocab_size=250,
                               generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(batch.input_ids, batch.attention_mask)
    calls: list = []
    model.packed_attention = "thd"
    for layer in model.decoder.layers:
        layer.self_attention.core_attention = ReferenceTHDAttention(causal=attention == "causal",
                                                                    calls=calls)
    packed = pack_batch(batch, length=96)  # 68 real tokens and a 28-token tail segment
    with torch.no_grad():
        got = model(packed.input_ids, packed.attention_mask, cu_seqlens=packed.cu_seqlens)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert len(calls) == len(model.decoder.layers)
    params = calls[0]
    assert params.cu_seqlens_q.dtype == torch.int32  # what TE's kernels require
    assert params.cu_seqlens_q.tolist() == packed.cu_seqlens.tolist() + [96]
    assert packed.cu_seqlens[-1] == 68
    assert params.max_seqlen_q == params.max_seqlen_kv == 28  # the tail is the longest segment


def test_thd_params_and_megatron_thd_rope_match_the_mask_path():
    """Megatron's unfused THD RoPE (what the fused TE kernel must equal) applied with our
    cu_seqlens gives what the mask path applies with per-token positions."""
    from megatron.core.models.common.embeddings.rope_utils import (_apply_rotary_pos_emb_bshd,
                                                                   _apply_rotary_pos_emb_thd)
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    class OneRank:
        def size(self):
            return 1

        def rank(self):
            return 0

    cu = torch.tensor([0, 5, 7, 16], dtype=torch.int32)
    bounds = packing.segment_bounds(cu, 20)
    params = packing.thd_params(bounds)
    assert bounds.tolist() == [0, 5, 7, 16, 20] and params.max_seqlen_q == 9
    rope = RotaryEmbedding(kv_channels=16, rotary_percent=1.0, use_cpu_initialization=True)
    t = torch.randn(20, 2, 16)  # [t, heads, dim]
    thd = _apply_rotary_pos_emb_thd(t, bounds, rope(params.max_seqlen_q), cp_group=OneRank())
    positions = packing.positions_in_rows(cu, 20)
    assert positions.tolist()[:9] == [0, 1, 2, 3, 4, 0, 1, 0, 1] and positions[16:].sum() == 0
    mask_path = _apply_rotary_pos_emb_bshd(t[:, None], rope(int(positions.max()) + 1)[positions])
    # Real rows agree exactly; the tail differs (THD counts its positions on, we use 0) and is
    # never pooled.
    torch.testing.assert_close(thd[:16], mask_path[:16, 0], atol=1e-6, rtol=1e-6)
