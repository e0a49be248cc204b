"""Token-budget micro-batches (``data.micro_batch_tokens``) and packing for a parallel layout."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.packing import pack_for_layout, split_by_tokens


def _batch(query, positive, negatives, k=1) -> Batch:
    """Rows with the given real lengths (queries, positives, negatives item-major), width 16."""
    lengths = torch.tensor([*query, *positive, *negatives])
    mask = torch.arange(16)[None, :] < lengths[:, None]
    ids = torch.arange(1, lengths.numel() * 16 + 1).view(-1, 16) % 250 + 1
    return Batch(input_ids=ids.masked_fill(~mask, 0), attention_mask=mask,
                 num_queries=len(query), num_negatives=k)


def test_split_by_tokens_is_greedy_over_whole_pairs():
    # Pair tokens: 3+5+4=12, 2+9+1=12, 6+6+6=18, 1+1+1=3.
    batch = _batch([3, 2, 6, 1], [5, 9, 6, 1], [4, 1, 6, 1])
    pieces = split_by_tokens(batch, max_tokens=24)
    assert [p.num_queries for p in pieces] == [2, 2]  # 12+12 | 18+3
    assert all(int(p.attention_mask.sum()) <= 24 for p in pieces)
    # Every row lands in exactly one piece, in order.
    assert torch.equal(torch.cat([p.input_ids[:p.num_queries] for p in pieces]), batch.input_ids[:4])
    assert [p.num_queries for p in split_by_tokens(batch, max_tokens=21)] == [1, 1, 2]
    assert [p.num_queries for p in split_by_tokens(batch, max_tokens=100)] == [4]
    with pytest.raises(ValueError, match=r"data.micro_batch_tokens=17: pair 2 of the batch has 18 "
                                         r"tokens"):
        split_by_tokens(batch, max_tokens=17)


def test_pipeline_layout_packs_every_micro_batch_to_one_shape():
    batch = _batch([3, 2, 6, 1], [5, 9, 6, 1], [4, 1, 6, 1])
    pieces = split_by_tokens(batch, max_tokens=24)
    pp = ParallelConfig(pipeline_model_parallel_size=2)
    budget = pack_for_layout(pieces, pad_to_multiple=8, parallel=pp, token_budget=24)
    assert [tuple(p.input_ids.shape) for p in budget] == [(1, 24), (1, 24)]
    longest = pack_for_layout(pieces, pad_to_multiple=8, parallel=pp)
    assert [tuple(p.input_ids.shape) for p in longest] == [(1, 24), (1, 24)]  # 24 and 21 -> 24
    free = pack_for_layout(pieces, pad_to_multiple=8, parallel=ParallelConfig())
    assert [tuple(p.input_ids.shape) for p in free] == [(1, 24), (1, 24)]
    sp = ParallelConfig(tensor_model_parallel_size=3, sequence_parallel=True)
    assert [p.input_ids.size(1) for p in pack_for_layout(pieces, pad_to_multiple=8,
                                                         parallel=sp)] == [24, 24]
    odd = pack_for_layout(pieces, pad_to_multiple=5, parallel=ParallelConfig())
    assert [p.input_ids.size(1) for p in odd] == [25, 25]


def test_processed_and_real_tokens_of_padded_trimmed_and_packed_batches():
    from megatron_hybridir.data.packing import pack_batch

    batch = _batch([3, 2], [5, 9], [4, 1])
    assert batch.row_lengths().tolist() == [3, 2, 5, 9, 4, 1]
    assert batch.processed_tokens(trim_segments=True) == 6 * 16  # no segment widths: all of it
    trimmed = Batch(input_ids=batch.input_ids, attention_mask=batch.attention_mask, num_queries=2,
                    num_negatives=1, segment_lengths=(8, 16, 8))
    assert trimmed.processed_tokens(trim_segments=True) == 2 * 8 + 2 * 16 + 2 * 8
    assert trimmed.processed_tokens(trim_segments=False) == 6 * 16  # pipeline stages: whole batch
    packed = pack_batch(batch, multiple=8)
    assert packed.row_lengths().tolist() == [3, 2, 5, 9, 4, 1]
    assert packed.processed_tokens(trim_segments=False) == 24
