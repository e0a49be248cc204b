"""Packed sequences: the rows of a micro-batch as one token stream [1, T] with row boundaries.

Why it exists: padding every row of a micro-batch to its longest (or, under pipeline parallelism,
to ``data.seq_length``) spends most of the compute on padding when queries are short and passages
long. Packed, the rows are concatenated and ``cu_seqlens`` ([rows + 1] offsets) says where each
starts; attention never crosses a boundary, positions restart at each row, and pooling reads each
row's own tokens, so every embedding equals the unpacked one.

Two attention paths with the same result:

- ``thd`` (Transformer Engine): Megatron-Core's ``PackedSeqParams(qkv_format="thd")`` carries
  ``cu_seqlens`` to TE's attention and to the THD RoPE (which restarts positions per row itself);
- ``mask`` (the local spec, CPU tests): an explicit block-diagonal mask [1, 1, T, T] (causal inside
  each row when asked) and RoPE frequencies gathered per token from each token's own position.

Cost: TE's THD kernels compute each row's s_i x s_i scores only (what ``training/flops.py``
counts). The mask path computes the whole T x T score matrix and masks it, so on the local spec
packing saves the linears' padding but not attention work; it exists for correctness on CPU.

Tokens after the last row (tail padding, so that the length fits a pipeline shape or the
sequence-parallel split) form one extra segment: they attend only among themselves and are never
pooled.

What it does not do: decide lengths or build batches (``data/packing.py``), or know process groups.
"""

from __future__ import annotations

import torch
from megatron.core.packed_seq_params import PackedSeqParams
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


def block_diagonal_mask(bounds: Tensor, *, causal: bool) -> Tensor:
    """Boolean "do not attend" mask [1, 1, T, T]: keys of another segment (or future keys)."""
    lengths = (bounds[1:] - bounds[:-1]).long()
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=bounds.device), lengths)
    blocked = segment[:, None] != segment[None, :]  # [T, T]
    if causal:
        t = segment.numel()
        blocked = blocked | torch.ones(t, t, dtype=torch.bool, device=bounds.device).triu(1)
    return blocked[None, None]


def thd_params(bounds: Tensor) -> PackedSeqParams:
    """Megatron-Core's packed-sequence parameters for TE's THD attention and the THD RoPE."""
    max_len = int((bounds[1:] - bounds[:-1]).max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=bounds, cu_seqlens_kv=bounds,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)


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
