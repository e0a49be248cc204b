"""Synthetic token batches (``data/batch.Batch``, monolingual), for runs without a corpus.

Why it exists: before any data is prepared, ``train`` must still exercise the whole stack and show
that it learns. In ``related_pairs`` each positive is a noisy shuffle of its query's tokens and
negatives are random, so a bag-of-tokens embedder can learn the task and loss / in-batch accuracy
visibly improve. ``random_token_batch`` is unrelated random tokens of random lengths, for tests and
benchmarks that only need shapes and padding.
"""

from __future__ import annotations

import torch

from megatron_hybridir.data.batch import Batch


def related_pairs(*, num_queries: int, num_negatives: int, seq_length: int, vocab_size: int,
                  generator: torch.Generator) -> Batch:
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
    return Batch(input_ids=ids.masked_fill(~mask, 0), attention_mask=mask, num_queries=b,
                 num_negatives=k)


def random_token_batch(*, num_queries: int, num_negatives: int, seq_length: int, vocab_size: int,
                       generator: torch.Generator, min_length: int = 2) -> Batch:
    """A right-padded batch of random tokens in the layout above (tests and benchmarks); not learnable."""
    rows = num_queries * (2 + num_negatives)
    lengths = torch.randint(min_length, seq_length + 1, (rows,), generator=generator)
    input_ids = torch.randint(1, vocab_size, (rows, seq_length), generator=generator)
    mask = torch.arange(seq_length)[None, :] < lengths[:, None]
    input_ids = input_ids.masked_fill(~mask, 0)
    return Batch(input_ids=input_ids, attention_mask=mask, num_queries=num_queries,
                 num_negatives=num_negatives)
