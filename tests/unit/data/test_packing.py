"""Token-budget micro-batches (``data.micro_batch_tokens``) and packing for a parallel layout."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.packing import (balanced_groups, pack_for_layout, pair_tokens,
                                             split_by_tokens)


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
    assert [tuple(p.input_ids.shape) for p in budget] == [(1, 24), (1, 24)]  # the longest: 24
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


@pytest.mark.parametrize("seed", range(20))
def test_balanced_groups_invariants(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 40, (1,), generator=g))
    tokens = torch.randint(3, 200, (n,), generator=g).tolist()
    count = int(torch.randint(1, 9, (1,), generator=g))
    for groups in (balanced_groups(tokens, count=count), balanced_groups(tokens, budget=400)):
        # Every pair exactly once, each group in the original order, no empty group.
        assert sorted(i for grp in groups for i in grp) == list(range(n))
        assert all(grp == sorted(grp) and grp for grp in groups)
        totals = [sum(tokens[i] for i in grp) for grp in groups]
        assert max(totals) - min(totals) <= max(tokens)  # within one pair of each other
    assert len(balanced_groups(tokens, count=count)) == min(count, n)
    budgeted = balanced_groups(tokens, budget=400)
    assert all(sum(tokens[i] for i in grp) <= 400 for grp in budgeted)
    assert len(budgeted) >= -(-sum(tokens) // 400)
    # A pure function of the token counts: a resumed run groups alike.
    assert balanced_groups(list(tokens), budget=400) == budgeted
    assert balanced_groups(list(tokens), count=count) == balanced_groups(tokens, count=count)


def test_balanced_groups_examples_and_errors():
    # Longest first to the lighter group: 10 | 8, 2 -> 10 | 10, then 1 and 1: 11 | 11.
    assert balanced_groups([10, 1, 1, 8, 2], count=2) == [[0, 1], [2, 3, 4]]
    assert balanced_groups([10, 1, 1, 8, 2], budget=12) == [[0, 1], [2, 3, 4]]
    assert balanced_groups([10, 1, 1, 8, 2], budget=10) == [[0], [3], [1, 2, 4]]  # 10 | 8 | 4
    with pytest.raises(ValueError, match="data.micro_batch_tokens=9: pair 0 has 10 tokens"):
        balanced_groups([10, 1], budget=9)
    with pytest.raises(ValueError, match="give count or budget"):
        balanced_groups([1], count=1, budget=2)


def _pairs(batch: Batch) -> list[tuple]:
    """Each pair's rows' real tokens (query, positive, negatives) of a packed or padded batch."""
    if batch.is_packed:
        cu = batch.cu_seqlens.tolist()
        rows = [tuple(batch.input_ids[0, a:b].tolist()) for a, b in zip(cu, cu[1:])]
    else:
        rows = [tuple(r[m].tolist()) for r, m in zip(batch.input_ids, batch.attention_mask)]
    b, k = batch.num_queries, batch.num_negatives
    return [(rows[i], rows[b + i], *rows[2 * b + i * k:2 * b + (i + 1) * k]) for i in range(b)]


def test_pipeline_balance_regroups_whole_pairs_into_equal_streams():
    # Two micro-batches of 2 pairs: 16+16+16=48 and 15+16+14=45 tokens, then 3 and 3.
    micro = [_batch([16, 15], [16, 16], [16, 14]), _batch([1, 1], [1, 1], [1, 1])]
    pp = ParallelConfig(pipeline_model_parallel_size=2)
    plain = pack_for_layout(micro, pad_to_multiple=8, parallel=pp)
    assert [p.input_ids.size(1) for p in plain] == [96, 96]  # 93 and 6 real tokens
    balanced = pack_for_layout(micro, pad_to_multiple=8, parallel=pp, balance=True)
    assert [p.num_queries for p in balanced] == [2, 2]
    assert [int(p.attention_mask.sum()) for p in balanced] == [51, 48]  # 48+3 | 45+3
    assert [p.input_ids.size(1) for p in balanced] == [56, 56]
    # Whole pairs, each exactly once (query, positive and negative of one pair stay together).
    expected = sorted(pair for mb in micro for pair in _pairs(mb))
    assert sorted(pair for mb in balanced for pair in _pairs(mb)) == expected
    # With a budget: as few near-equal streams as hold the pairs within it.
    budget = pack_for_layout(micro, pad_to_multiple=8, parallel=pp, balance=True, token_budget=60)
    assert [int(p.attention_mask.sum()) for p in budget] == [51, 48]
    one = pack_for_layout(micro, pad_to_multiple=8, parallel=pp, balance=True, token_budget=99)
    assert [p.input_ids.size(1) for p in one] == [104]
    # One pipeline stage: streams are never padded to each other, so nothing is regrouped.
    single = pack_for_layout(micro, pad_to_multiple=8, parallel=ParallelConfig(), balance=True)
    assert [p.input_ids.size(1) for p in single] == [96, 8]


def test_concat_is_the_inverse_of_select():
    batch = _batch([3, 2, 6, 1], [5, 9, 6, 1], [4, 1, 6, 1])
    pieces = [batch.select([0, 1]), batch.select([2, 3])]
    joined = Batch.concat(pieces)
    assert torch.equal(joined.input_ids, batch.input_ids)
    assert torch.equal(joined.attention_mask, batch.attention_mask)
    assert pair_tokens(joined) == [12, 12, 18, 3]
    narrow = dataclasses.replace(pieces[1], input_ids=pieces[1].input_ids[:, :8],
                                 attention_mask=pieces[1].attention_mask[:, :8])
    assert _pairs(Batch.concat([pieces[0], narrow])) == _pairs(batch)
    with pytest.raises(ValueError, match="num_negatives or kind"):
        Batch.concat([batch, _batch([1], [1], [1, 1], k=2)])
