"""Synthetic, learnable token pairs for runs without a corpus (CPU smoke runs, tests, benchmarks).

Why it exists: before any data is prepared, ``train`` must still exercise the whole stack and show
that it learns. Each positive is a noisy shuffle of its query's tokens and negatives are random, so
a bag-of-tokens embedder can learn the task and loss / in-batch accuracy visibly improve.
"""

from __future__ import annotations

import torch


def related_pairs(*, num_queries: int, num_negatives: int, seq_length: int, vocab_size: int,
                  generator: torch.Generator) -> dict:
    """Token batch in the engine's layout where each positive is a noisy shuffle of its query.

    Every row is padded to ``seq_length`` (fixed shapes, as pipeline parallelism needs).
    """
    b, k, s = num_queries, num_negatives, seq_length
    base = torch.randint(1, vocab_size, (b, s), generator=generator)
    lengths = torch.randint(s // 2, s + 1, (b * (2 + k),), generator=generator)
    perm = torch.argsort(torch.rand(b, s, generator=generator), dim=1)
    positive = torch.gather(base, 1, perm)
    noise = torch.rand(b, s, generator=generator) < 0.25
    positive = torch.where(noise, torch.randint(1, vocab_size, (b, s), generator=generator), positive)
    negatives = torch.randint(1, vocab_size, (b * k, s), generator=generator)
    ids = torch.cat([base, positive, negatives])
    mask = torch.arange(s)[None, :] < lengths[:, None]
    return {"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask,
            "num_queries": b, "num_negatives": k}
