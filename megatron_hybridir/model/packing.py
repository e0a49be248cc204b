"""Packed sequences: the rows of a micro-batch as one token stream [1, T] with row boundaries.

Why it exists: padding every row of a micro-batch to its longest (or, under pipeline parallelism,
to ``data.seq_length``) spends most of the compute on padding when queries are short and passages
long. Packed, the rows are concatenated and ``cu_seqlens`` ([rows + 1] offsets) says where each
starts; attention never crosses a boundary, positions restart at each row, and pooling reads each
row's own tokens, so every embedding equals the unpacked one.

Two attention paths with the same result:

- ``thd`` (Transformer Engine): Megatron-Core's ``PackedSeqParams(qkv_format="thd")`` carries
  ``cu_seqlens`` to TE's attention and to the THD RoPE (which restarts positions per row itself);
- ``segments`` (the local spec, CPU): ``PackedSeqParams(qkv_format="sbhd")`` carries the row
  bounds past Megatron's attention (which only reshapes for ``thd``) to ``SegmentAttention``,
  which computes each row's own s_i x s_i scores (causal inside the row when asked); RoPE
  frequencies are gathered per token from each token's own position.

Cost: both paths compute each row's s_i x s_i scores only (what ``training/flops.py`` counts), not
the whole T x T matrix of the stream, so packing saves attention work as well as the linears'.

Tokens after the last row (tail padding, so that the length fits a pipeline shape or the
sequence-parallel split) form one extra segment: they attend only among themselves and are never
pooled.

What it does not do: decide lengths or build batches (``data/packing.py``), or know process groups.
"""

from __future__ import annotations

import torch
from megatron.core import tensor_parallel
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer.dot_product_attention import DotProductAttention
from torch import Tensor


def segment_bounds(cu_seqlens: Tensor, total: int) -> Tensor:
    """Row offsets [rows + 1] plus, when the stream is longer, the tail as one more segment."""
    cu = cu_seqlens.to(torch.int32)
    if int(cu[-1]) > total:
        raise ValueError(f"cu_seqlens ends at {int(cu[-1])} but the stream has {total} tokens")
    if int(cu[-1]) < total:
        cu = torch.cat([cu, cu.new_tensor([total])])
    return cu


def positions_in_rows(cu_seqlens: Tensor, total: int) -> Tensor:
    """Each token's position inside its own row, [T] int64: 0..len-1 per row, 0 on the tail (so
    a long tail never reads past a learned position table)."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths)
    positions = torch.zeros(total, dtype=torch.long, device=cu_seqlens.device)
    positions[:starts.numel()] = torch.arange(starts.numel(), device=cu_seqlens.device) - starts
    return positions


def thd_params(bounds: Tensor) -> PackedSeqParams:
    """Megatron-Core's packed-sequence parameters for TE's THD attention and the THD RoPE."""
    max_len = int((bounds[1:] - bounds[:-1]).max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=bounds, cu_seqlens_kv=bounds,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)


def segment_params(bounds: Tensor) -> PackedSeqParams:
    """The row bounds for ``SegmentAttention`` (local spec). ``sbhd``: Megatron's attention
    leaves the [T, 1, heads, d] layout and the RoPE as they are and hands the bounds through."""
    max_len = int((bounds[1:] - bounds[:-1]).max())
    return PackedSeqParams(qkv_format="sbhd", cu_seqlens_q=bounds, cu_seqlens_kv=bounds,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)


class SegmentAttention(DotProductAttention):
    """Megatron's local core attention; on a packed stream, one row (segment) at a time.

    Why: a block-diagonal T x T mask computes and softmaxes T^2 scores of which only sum(s_i^2)
    are kept; on CPU that made packed attention cost as much as the padded batch's. Unpacked
    inputs (``packed_seq_params`` None) go to Megatron's code unchanged.
    """

    def __init__(self, *args, causal: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.causal = causal
        # Megatron divides the scale by the layer number and multiplies it back in the softmax.
        self.score_scale = self.softmax_scale * (
            self.layer_number if self.config.apply_query_key_layer_scaling else 1)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params: PackedSeqParams = None) -> Tensor:
        if packed_seq_params is None:
            return super().forward(query, key, value, attention_mask,
                                   attn_mask_type=attn_mask_type, attention_bias=attention_bias)
        if packed_seq_params.qkv_format != "sbhd" or attention_bias is not None:
            raise ValueError(f"SegmentAttention: packed streams come as sbhd with row bounds and "
                             f"no bias, got qkv_format={packed_seq_params.qkv_format!r}")
        if self.softmax_offset is not None or self.config.window_size is not None:
            raise ValueError("SegmentAttention: softmax offsets and sliding windows are not "
                             "supported on packed streams")
        repeat = self.num_attention_heads_per_partition // self.num_query_groups_per_partition
        q = query[:, 0].transpose(0, 1)  # [T, 1, np, hn] -> [np, T, hn]
        k = key[:, 0].repeat_interleave(repeat, dim=1).transpose(0, 1)  # [np, T, hn]
        v = value[:, 0].repeat_interleave(repeat, dim=1).transpose(0, 1)  # [np, T, hn]
        bounds = packed_seq_params.cu_seqlens_q.tolist()
        if bounds[-1] != q.size(1):
            raise ValueError(f"SegmentAttention: row bounds end at {bounds[-1]}, the stream has "
                             f"{q.size(1)} tokens")
        context = torch.cat([self._segment(q[:, a:b], k[:, a:b], v[:, a:b])
                             for a, b in zip(bounds, bounds[1:])], dim=1)  # [np, T, hn]
        return context.permute(1, 0, 2).reshape(q.size(1), 1, -1)  # [T, 1, np * hn]

    def _segment(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention inside one row: [np, s, hn] each -> [np, s, hn]."""
        scores = torch.matmul(q, k.transpose(1, 2)) * self.score_scale  # [np, s, s]
        if self.causal:
            s = scores.size(-1)
            future = torch.ones(s, s, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        if self.config.attention_softmax_in_fp32:
            scores = scores.float()
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        if self.config.sequence_parallel:
            probs = self.attention_dropout(probs)
        else:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                probs = self.attention_dropout(probs)
        return torch.matmul(probs, v)


def unpack_rows(hidden: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
    """Packed states [T, h] -> row states [rows, L, h] and real-token mask [rows, L] (L = longest
    row), the layout every pooling type reads. Positions past a row's end hold another row's state
    and are masked; pooling never reads them, so their gradient is zero."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()  # [rows]
    width = int(lengths.max())
    offsets = torch.arange(width, device=hidden.device)
    mask = offsets[None, :] < lengths[:, None]  # [rows, L]
    index = (cu_seqlens[:-1].long()[:, None] + offsets[None, :]).clamp(max=hidden.size(0) - 1)
    return hidden[index], mask
