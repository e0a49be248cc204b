"""The token batch of one micro-batch: what the collator and the synthetic source build and the
forward step, GradCache and the schedules read (docs/design.md §7.3).

Why it exists: the batch crosses four modules (``data/dataset.py``, ``data/synthetic.py``,
``training/forward_step.py``, ``training/gradcache.py``); one frozen dataclass states its layout
and checks it once, where it is built, instead of each reader trusting a dict's keys.

Layout, with b = ``num_queries`` and k = ``num_negatives``: ``input_ids`` / ``attention_mask`` rows
are ``[q_0..q_{b-1}, p_0..p_{b-1}, n_{0,0}..n_{0,k-1}, n_{1,0}..]`` (negatives item-major), so
queries and passages travel as one tensor and every pipeline stage sends one activation tensor.
Packed (``cu_seqlens`` set, ``data/packing.py``), the same rows lie back to back in one stream
``[1, T]`` and ``cu_seqlens`` holds their offsets.

What it does not do: tokenize, sample or pad (the collator), or split embeddings (forward step).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from megatron_hybridir.data.batch_kind import BatchKind


# eq=False: batches compare by identity (a field-wise == would compare tensors elementwise).
@dataclass(frozen=True, eq=False)
class Batch:
    input_ids: Tensor
    """[b*(2+k), S] int64, right padded with the tokenizer's pad id."""
    attention_mask: Tensor
    """[b*(2+k), S] bool, True on real tokens."""
    num_queries: int
    """b: pairs in the micro-batch."""
    num_negatives: int
    """k: hard negatives per pair (``loss.num_hard_negatives``)."""
    kind: BatchKind = BatchKind.MONOLINGUAL
    """The global batch's kind (the sampler's); synthetic batches are monolingual."""
    positive_ids: Optional[Tensor] = None
    """[b] int64 content ids of the positives (false-negative masking), or None."""
    negative_ids: Optional[Tensor] = None
    """[b*k] int64 content ids of the negatives, item-major like their rows; set with positive_ids."""
    segment_lengths: Optional[tuple[int, int, int]] = None
    """Padded widths of the query, positive and negative segments (each <= S): the forward step runs
    them as separate passes. None (fixed-length batches, pipeline parallelism): one pass over S."""
    cu_seqlens: Optional[Tensor] = None
    """Packed batches only: [b*(2+k) + 1] int32 offsets of each row in the stream ``input_ids``
    [1, T]; tokens from ``cu_seqlens[-1]`` to T are tail padding (``data/packing.py``)."""
    teacher_scores: Optional[Tensor] = None
    """[b, 1 + k] float32 teacher scores of each pair's positive and hard negatives (distillation),
    NaN where a negative has none (filled in from another item); None when the data has none."""

    def __post_init__(self):
        b, k = self.num_queries, self.num_negatives
        rows = b * (2 + k)
        if self.cu_seqlens is not None:
            self._check_packed(rows)
        elif self.input_ids.dim() != 2 or self.input_ids.size(0) != rows:
            raise ValueError(f"Batch.input_ids: expected [{rows}, S] (b={b}, k={k}), got "
                             f"{list(self.input_ids.shape)}")
        if self.attention_mask.shape != self.input_ids.shape:
            raise ValueError(f"Batch.attention_mask: shape {list(self.attention_mask.shape)} != "
                             f"input_ids {list(self.input_ids.shape)}")
        if (self.positive_ids is None) != (self.negative_ids is None):
            raise ValueError("Batch: positive_ids and negative_ids are given together or not at all")
        if self.positive_ids is not None and (self.positive_ids.numel() != b
                                              or self.negative_ids.numel() != b * k):
            raise ValueError(f"Batch: expected {b} positive_ids and {b * k} negative_ids, got "
                             f"{self.positive_ids.numel()} and {self.negative_ids.numel()}")
        if self.teacher_scores is not None and list(self.teacher_scores.shape) != [b, 1 + k]:
            raise ValueError(f"Batch.teacher_scores: expected [{b}, {1 + k}], got "
                             f"{list(self.teacher_scores.shape)}")
        object.__setattr__(self, "kind", BatchKind(self.kind))
        if self.segment_lengths is not None:
            object.__setattr__(self, "segment_lengths", tuple(int(n) for n in self.segment_lengths))

    def _check_packed(self, rows: int) -> None:
        cu = self.cu_seqlens
        if self.input_ids.dim() != 2 or self.input_ids.size(0) != 1:
            raise ValueError(f"Batch.input_ids: a packed batch is one stream [1, T], got "
                             f"{list(self.input_ids.shape)}")
        if cu.dim() != 1 or cu.numel() != rows + 1:
            raise ValueError(f"Batch.cu_seqlens: expected {rows + 1} offsets (b={self.num_queries}, "
                             f"k={self.num_negatives}), got shape {list(cu.shape)}")
        if int(cu[0]) != 0 or bool((cu[1:] <= cu[:-1]).any()) or int(cu[-1]) > self.input_ids.size(1):
            raise ValueError(f"Batch.cu_seqlens: expected increasing offsets from 0 to at most "
                             f"T={self.input_ids.size(1)} (no empty row), got {cu.tolist()}")
        if self.segment_lengths is not None:
            raise ValueError("Batch: a packed batch has no segment_lengths")

    @property
    def is_packed(self) -> bool:
        return self.cu_seqlens is not None

    def row_lengths(self) -> Tensor:
        """Real tokens of each row, [rows] int64, in row order."""
        if self.is_packed:
            return (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).long()
        return self.attention_mask.sum(dim=1).long()

    def processed_tokens(self, *, trim_segments: bool) -> int:
        """Token positions the model computes for this batch: the stream length when packed, each
        segment's rows x width when the forward step trims segments (one pipeline stage), else
        every padded position."""
        if self.is_packed:
            return self.input_ids.numel()
        if trim_segments and self.segment_lengths is not None:
            b, rows = self.num_queries, self.input_ids.size(0)
            return sum(n * w for n, w in zip((b, b, rows - 2 * b), self.segment_lengths))
        return self.input_ids.numel()

    @property
    def has_content_ids(self) -> bool:
        return self.positive_ids is not None

    def to(self, device, *, non_blocking: bool = True) -> "Batch":
        """The same batch with every tensor field on ``device`` (subclasses' tensors too)."""
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                 for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return dataclasses.replace(self, **moved)

    def select(self, pairs: Sequence[int]) -> "Batch":
        """The batch of the given pairs (their queries, positives and negatives), in that order.

        Segment widths are kept: they bound the selected rows too, and a wider trim changes no
        embedding (each row depends only on its real tokens).
        """
        if self.is_packed:
            raise ValueError("Batch.select: select pairs before packing (data/packing.pack_batch)")
        b, k = self.num_queries, self.num_negatives
        idx = torch.as_tensor(list(pairs), dtype=torch.long)
        neg = (idx[:, None] * k + torch.arange(k)[None, :]).reshape(-1)
        rows = torch.cat([idx, b + idx, 2 * b + neg])
        return dataclasses.replace(
            self, input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
            num_queries=len(idx),
            positive_ids=None if self.positive_ids is None else self.positive_ids[idx],
            negative_ids=None if self.negative_ids is None else self.negative_ids[neg],
            teacher_scores=None if self.teacher_scores is None else self.teacher_scores[idx])

    @staticmethod
    def concat(batches: Sequence["Batch"]) -> "Batch":
        """The pairs of several padded batches as one, in order (rows re-laid out as queries,
        positives, negatives); narrower batches are padded with masked zeros to the widest."""
        if not batches or any(b.is_packed for b in batches):
            raise ValueError("Batch.concat: concatenate one or more padded (unpacked) batches")
        first = batches[0]
        if any(b.num_negatives != first.num_negatives or b.kind != first.kind for b in batches):
            raise ValueError("Batch.concat: the batches differ in num_negatives or kind")
        width = max(b.input_ids.size(1) for b in batches)

        def rows(field: str, part: int):
            out = []
            for b in batches:
                t = getattr(b, field)
                t = torch.nn.functional.pad(t, (0, width - t.size(1)))
                n = b.num_queries
                out.append(t[(0, n, 2 * n)[part]:(n, 2 * n, t.size(0))[part]])
            return out

        def optional(field: str):
            values = [getattr(b, field) for b in batches]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"Batch.concat: {field} is set on some batches only")
            return torch.cat(values)

        segments = ([b.segment_lengths for b in batches]
                    if all(b.segment_lengths for b in batches) else None)
        return dataclasses.replace(
            first, num_queries=sum(b.num_queries for b in batches),
            input_ids=torch.cat([t for part in range(3) for t in rows("input_ids", part)]),
            attention_mask=torch.cat([t for part in range(3) for t in rows("attention_mask", part)]),
            positive_ids=optional("positive_ids"), negative_ids=optional("negative_ids"),
            teacher_scores=optional("teacher_scores"),
            segment_lengths=tuple(map(max, zip(*segments))) if segments else None)

    def split(self, pairs_per_chunk: int) -> list["Batch"]:
        """Consecutive chunks of ``pairs_per_chunk`` pairs (GradCache's micro-batches of a batch)."""
        if pairs_per_chunk < 1 or self.num_queries % pairs_per_chunk:
            raise ValueError(f"Batch.split: {self.num_queries} pairs do not divide into chunks of "
                             f"{pairs_per_chunk}")
        return [self.select(range(start, start + pairs_per_chunk))
                for start in range(0, self.num_queries, pairs_per_chunk)]
