"""Packing a padded micro-batch into one token stream (``data.packing``).

Why it exists: the collator right-pads every row of a micro-batch to one width (its longest row,
or ``data.seq_length`` under pipeline parallelism), so short queries carry long passages' padding.
Packed, the real tokens of all rows lie back to back in ``input_ids`` [1, T] and ``cu_seqlens``
says where each row starts; the model (``model/packing.py``) keeps rows apart, so the embeddings
are unchanged and only the work shrinks.

T is the real-token count rounded up to ``multiple`` (the collator's ``pad_to_multiple``, times the
tensor-parallel size under sequence parallelism, which splits the stream evenly over TP ranks), or
a fixed ``length`` when every micro-batch must have one shape (pipeline stages exchange activations
of a fixed shape). Under pipeline parallelism with GradCache (whose loss does not depend on how
pairs are grouped) a rank's pairs are first spread over the step's streams so that the streams are
near equal (``balanced_groups``), and every stream is padded only to the longest one.

What it does not do: tokenize, sample or choose rows; the row order (queries, positives,
negatives) is the unpacked batch's.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Optional, Sequence

import torch

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.data.batch import Batch


def packed_length(batch: Batch, *, multiple: int) -> int:
    """Real tokens of ``batch`` rounded up to ``multiple``."""
    real = int(batch.attention_mask.sum())
    return max(multiple, -(-real // multiple) * multiple)


def pack_batch(batch: Batch, *, multiple: int = 8, length: Optional[int] = None,
               pad_id: int = 0) -> Batch:
    """The same rows as one stream [1, T]; T = ``length`` or the real tokens rounded up."""
    if batch.is_packed:
        raise ValueError("pack_batch: the batch is already packed")
    mask = batch.attention_mask.bool()
    lengths = mask.sum(dim=1)  # [rows]
    if bool((lengths == 0).any()):
        raise ValueError(f"pack_batch: rows {torch.nonzero(lengths == 0).flatten().tolist()} have "
                         f"no real token")
    real = int(lengths.sum())
    total = length if length is not None else packed_length(batch, multiple=multiple)
    if total < real:
        raise ValueError(f"pack_batch: {real} real tokens do not fit in length {total}")
    # Right padding: the real tokens of a row are its first ``length`` entries, in order.
    ids = torch.full((1, total), pad_id, dtype=batch.input_ids.dtype)
    ids[0, :real] = batch.input_ids[mask]
    stream_mask = torch.zeros(1, total, dtype=torch.bool)
    stream_mask[0, :real] = True
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    return dataclasses.replace(batch, input_ids=ids, attention_mask=stream_mask,
                               segment_lengths=None, cu_seqlens=cu)


def pack_micro_batches(micro: Sequence[Batch], *, multiple: int, same_length: bool,
                       pad_id: int = 0) -> list[Batch]:
    """Pack each micro-batch; ``same_length`` (pipeline parallelism) pads all to the longest."""
    length = (max(packed_length(mb, multiple=multiple) for mb in micro) if same_length else None)
    return [pack_batch(mb, multiple=multiple, length=length, pad_id=pad_id) for mb in micro]


def packing_multiple(*, pad_to_multiple: int, tensor_parallel: int, sequence_parallel: bool) -> int:
    """The stream length's multiple: the collator's, and divisible by TP under sequence parallel."""
    tp = tensor_parallel if sequence_parallel else 1
    return pad_to_multiple * tp // math.gcd(pad_to_multiple, tp)


def pack_for_layout(micro: Sequence[Batch], *, pad_to_multiple: int, parallel: ParallelConfig,
                    token_budget: Optional[int] = None, balance: bool = False,
                    pad_id: int = 0) -> list[Batch]:
    """Pack one step's micro-batches for this parallel layout (what the trainer runs).

    Under pipeline parallelism all have one length, this step's longest stream. ``balance``
    (GradCache only: the loss spans the whole batch, so the grouping of pairs changes nothing but
    the work) first regroups this rank's pairs into near-equal streams (``balanced_groups``): as
    many as there are micro-batches, or with ``token_budget`` as few as hold the pairs within it."""
    multiple = packing_multiple(pad_to_multiple=pad_to_multiple,
                                tensor_parallel=parallel.tensor_model_parallel_size,
                                sequence_parallel=parallel.sequence_parallel)
    pipelined = parallel.pipeline_model_parallel_size > 1
    if pipelined and balance:
        local = Batch.concat(micro)
        groups = balanced_groups(pair_tokens(local), budget=token_budget,
                                 count=None if token_budget is not None else len(micro))
        micro = [local.select(group) for group in groups]
    # NOTE: every pipeline stage packs the same micro-batches, so all agree on the length (the
    # schedule is given it per step; data-parallel ranks run their own schedules, so theirs may
    # differ).
    return pack_micro_batches(micro, multiple=multiple, pad_id=pad_id, same_length=pipelined)


def pair_tokens(batch: Batch) -> list[int]:
    """Real tokens of each pair (its query, positive and negatives), in pair order."""
    b, k = batch.num_queries, batch.num_negatives
    lengths = batch.row_lengths()
    return (lengths[:b] + lengths[b:2 * b]
            + (lengths[2 * b:].view(b, k).sum(1) if k else 0)).tolist()


def balanced_groups(tokens: Sequence[int], *, count: Optional[int] = None,
                    budget: Optional[int] = None) -> list[list[int]]:
    """Pairs (by their token counts) in ``count`` groups of near-equal total, or, with ``budget``
    instead, in the fewest groups of at most ``budget`` tokens that this finds.

    Longest pair first into the group with the fewest tokens so far (LPT), so the groups' totals
    differ by at most the longest pair. Each group lists its pairs in their original order. A pure
    function of the token counts (which the sampler draws from seed, step and DP rank), so a
    resumed run groups alike.
    """
    if (count is None) == (budget is None):
        raise ValueError("balanced_groups: give count or budget, not both")
    if not tokens:
        raise ValueError("balanced_groups: no pairs")
    if budget is None:
        return _lpt(tokens, min(count, len(tokens)))
    if max(tokens) > budget:
        pair = max(range(len(tokens)), key=tokens.__getitem__)
        raise ValueError(f"data.micro_batch_tokens={budget}: pair {pair} has {tokens[pair]} tokens")
    # LPT may overfill a group at the lower bound; one more group at a time until all fit (one
    # pair per group always fits).
    for n in range(-(-sum(tokens) // budget), len(tokens) + 1):
        groups = _lpt(tokens, n)
        if max(sum(tokens[i] for i in g) for g in groups) <= budget:
            return groups
    raise AssertionError("unreachable: one pair per group fits the budget")


def _lpt(tokens: Sequence[int], count: int) -> list[list[int]]:
    heap = [(0, g) for g in range(count)]  # (tokens so far, group): ties go to the lower group
    groups: list[list[int]] = [[] for _ in range(count)]
    for pair in sorted(range(len(tokens)), key=lambda i: (-tokens[i], i)):
        load, g = heapq.heappop(heap)
        groups[g].append(pair)
        heapq.heappush(heap, (load + tokens[pair], g))
    return [sorted(g) for g in groups]


def split_by_tokens(batch: Batch, *, max_tokens: int) -> list[Batch]:
    """Consecutive micro-batches of whole pairs (query, positive, negatives), each holding at most
    ``max_tokens`` real tokens, filled greedily in pair order (``data.micro_batch_tokens``).

    The split depends only on the batch, which the sampler draws from (seed, step, DP rank), so a
    resumed run splits the same way. A pair longer than the budget on its own is an error.
    """
    if batch.is_packed:
        raise ValueError("split_by_tokens: split the padded batch, then pack the pieces")
    k = batch.num_negatives
    groups: list[list[int]] = []
    used = max_tokens + 1
    for pair, tokens in enumerate(pair_tokens(batch)):
        if tokens > max_tokens:
            raise ValueError(f"data.micro_batch_tokens={max_tokens}: pair {pair} of the batch has "
                             f"{tokens} tokens (query, positive and {k} negatives); raise the "
                             f"budget or lower data.seq_length")
        if used + tokens > max_tokens:
            groups.append([])
            used = 0
        groups[-1].append(pair)
        used += tokens
    return [batch.select(group) for group in groups]
