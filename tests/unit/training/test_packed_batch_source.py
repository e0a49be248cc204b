"""The trainer's packed micro-batches under pipeline parallelism (``BatchSource``): with GradCache
the step's pairs are regrouped into near-equal streams, the same pairs as without, resume-exact."""

from __future__ import annotations

import torch

from megatron_hybridir.config import load_config
from megatron_hybridir.training.trainer import BatchSource

BASE = ["parallel.pipeline_model_parallel_size=2", "data.packing=true", "seq_length=32",
        "data.global_batch_size=16", "data.micro_batch_size=4", "loss.num_hard_negatives=1"]


def _pairs(batch) -> list[tuple]:
    cu = batch.cu_seqlens.tolist()
    rows = [tuple(batch.input_ids[0, a:b].tolist()) for a, b in zip(cu, cu[1:])]
    b = batch.num_queries
    return [(rows[i], rows[b + i], rows[2 * b + i]) for i in range(b)]


def _streams(*overrides, step=3):
    config = load_config(None, BASE + list(overrides))
    return BatchSource(config, dp_rank=0, dp_size=1).micro_batches(step)


def test_gradcache_regroups_the_pairs_into_equal_streams():
    plain = _streams()
    balanced = _streams("training.gradcache=true")
    budget = _streams("training.gradcache=true", "data.micro_batch_tokens=600")
    # The budget draws the rank's pairs at once (synthetic data: another draw); one stage: greedy.
    greedy = _streams("training.gradcache=true", "data.micro_batch_tokens=600",
                      "parallel.pipeline_model_parallel_size=1")
    for micro, reference in ((balanced, plain), (budget, greedy)):
        pairs = sorted(p for mb in reference for p in _pairs(mb))
        longest_pair = max(sum(map(len, p)) for p in pairs)
        assert sorted(p for mb in micro for p in _pairs(mb)) == pairs  # whole pairs, each once
        assert len({mb.input_ids.shape for mb in micro}) == 1  # one pipeline shape per step
        real = [int(mb.attention_mask.sum()) for mb in micro]
        assert max(real) - min(real) <= longest_pair
        assert micro[0].input_ids.size(1) == -(-max(real) // 8) * 8  # the longest, not a budget
    assert len(balanced) == len(plain) == 4
    assert all(int(mb.attention_mask.sum()) <= 600 for mb in budget)

    def fraction(micro):
        return sum(int(mb.attention_mask.sum()) for mb in micro) / sum(
            mb.input_ids.numel() for mb in micro)

    assert fraction(balanced) > fraction(plain)
    # A pure function of (seed, step, DP rank): a resumed run draws the same streams.
    again = _streams("training.gradcache=true")
    assert all(torch.equal(a.input_ids, b.input_ids) for a, b in zip(balanced, again))
