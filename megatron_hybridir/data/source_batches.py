"""Same-source batches (``data.same_source_batches``): every global batch draws all its items from
one source.

Why it exists: with several sources mixed (translated MS MARCO, MIRACL, NQ), an in-batch negative
from another source differs in style and topic from the query's own, so it is trivially easy and
teaches little. Drawing each batch from one source keeps the negatives hard. It composes with the
hybrid rule: the batch kind is drawn first (``HybridSampler.kinds``, unchanged), then the source
among those that can fill that kind alone — a monolingual batch from any source with at least a
global batch of items, a cross-lingual or mixed batch only from a source with that many items in
two or more languages (a monolingual-only source can never fill one). Sources are drawn with
probability proportional to their size, or to ``source_weights``, renormalised over the eligible
sources of the drawn kind.

Items: each source has two pools (its parallel items, for cross-lingual / mixed batches; all its
items, for monolingual ones), each read in epochs of a permutation seeded by (seed, source, pool,
epoch). A pool's position at a step is the global batch size times the number of earlier batches
drawn from that pool, so everything is a pure function of (seed, step), computed vectorised from
the cached kinds and sources like the default sampler's stream positions. Where an epoch boundary
would repeat an item inside one batch, the repeat is replaced deterministically by an unused item
of the same pool, so no item appears twice in a global batch.

Languages are the sampler's, with one change: a monolingual batch's language is drawn among the
languages its items share (``batch_language_weights``), since one source may lack most of the
run's languages.

``source_weights`` here set how often each source fills a batch; within a source, items are drawn
uniformly (the default sampler instead uses them to weight each epoch's mixture).

What it does not do: assign pair languages (``sampler``), import torch, or hold a trainer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.data.seeding import keyed_rng   # the sampler's rule

_POOL_PARALLEL, _POOL_ALL = 0, 1


class SourceBatches:
    """Which source fills each step's batch, and that batch's items (sampler item ids: parallel
    items first, then monolingual-only items offset by the number of parallel items)."""

    def __init__(self, *, seed: int, batch_size: int, parallel_sources: np.ndarray,
                 mono_sources: np.ndarray, weights: Optional[np.ndarray],
                 kinds_possible: Sequence[BatchKind]):
        self.seed, self.batch_size = seed, batch_size
        n_par = len(parallel_sources)
        count = max(int(s.max(initial=-1)) for s in (parallel_sources, mono_sources)) + 1
        self.pools = [[np.flatnonzero(parallel_sources == s) for s in range(count)],
                      [np.concatenate([np.flatnonzero(parallel_sources == s),
                                       np.flatnonzero(mono_sources == s) + n_par])
                       for s in range(count)]]
        sizes = np.array([len(p) for p in self.pools[_POOL_ALL]], dtype=np.float64)
        shares = sizes / sizes.sum() if weights is None else np.asarray(weights, np.float64)
        small = [s for s in range(count) if shares[s] > 0 and sizes[s] < batch_size]
        if small:
            raise ValueError(f"data.same_source_batches: source(s) {small} have "
                             f"{[int(sizes[s]) for s in small]} items, fewer than the global batch "
                             f"of {batch_size}, and can never fill a batch alone; give them "
                             f"data.source_weights 0, merge them, or lower data.global_batch_size")
        # Per pool: each source's probability of filling a batch of that pool's kinds.
        self.probs = []
        for pool, what in ((_POOL_PARALLEL, "items with two or more languages"),
                           (_POOL_ALL, "items")):
            fits = np.array([len(p) >= batch_size for p in self.pools[pool]], dtype=np.float64)
            w = shares * fits
            kinds = [k for k in kinds_possible if _pool_of(k) == pool]
            if kinds and w.sum() == 0:
                raise ValueError(f"data.same_source_batches: no source has {batch_size} {what} "
                                 f"(the global batch) to fill a {kinds[0].label} batch alone "
                                 f"(per source: {[len(p) for p in self.pools[pool]]}); lower "
                                 f"data.global_batch_size or change data.mode / data.alpha")
            self.probs.append(w / w.sum() if w.sum() else w)
        self._cache = np.zeros(0, dtype=np.int32)

    def sources(self, kinds: np.ndarray) -> np.ndarray:
        """Source of every step whose kinds are given (steps 0..len-1), cached: a prefix of one
        seeded stream of uniforms, so it does not depend on how far ahead was asked."""
        n = len(kinds)
        if len(self._cache) < n:
            u = keyed_rng(self.seed, 0x50B7).random(len(kinds))
            pools = _pools(kinds)
            out = np.empty(n, dtype=np.int32)
            for pool, probs in enumerate(self.probs):
                sel = pools == pool
                cum = np.cumsum(probs)
                out[sel] = np.minimum(np.searchsorted(cum, u[sel] * cum[-1], side="right"),
                                      len(probs) - 1) if cum[-1] > 0 else -1
            self._cache = out
        return self._cache[:n]

    def items(self, step: int, kinds: np.ndarray) -> tuple[int, np.ndarray]:
        """(source, items) of ``step``; ``kinds`` covers steps 0..step."""
        sources, pools = self.sources(kinds), _pools(kinds)
        source, pool = int(sources[step]), int(pools[step])
        before = int(((sources[:step] == source) & (pools[:step] == pool)).sum())
        members = self.pools[pool][source]
        start, b, size = before * self.batch_size, self.batch_size, len(members)
        picks = np.empty(b, dtype=np.int64)
        filled = 0
        while filled < b:
            epoch, offset = divmod(start + filled, size)
            order = _order(self.seed, pool, source, epoch, size)
            chunk = order[offset:offset + b - filled]
            picks[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return source, members[_unique(picks, size, keyed_rng(self.seed, step, 4))]


@lru_cache(maxsize=8)
def _order(seed: int, pool: int, source: int, epoch: int, size: int) -> np.ndarray:
    """One source's item order in one epoch: drawn once, not at every step (O(items) each)."""
    order = keyed_rng(seed, 0x5A3E, pool, source, epoch).permutation(size)
    order.flags.writeable = False           # shared by every step that reads it
    return order


def batch_language_weights(masks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Language weights for one monolingual batch of one source: restricted to the languages every
    item has (else any item has), so a source's batch is not given a language it lacks (which
    would send every pair to its per-item fallback)."""
    bits = np.arange(len(weights), dtype=np.uint64)
    for pick in (np.bitwise_and.reduce(masks), np.bitwise_or.reduce(masks)):
        w = weights * ((pick >> bits) & np.uint64(1)).astype(np.float64)
        if w.sum() > 0:
            return w / w.sum()
    return weights


def _pool_of(kind) -> int:
    return _POOL_ALL if int(kind) == BatchKind.MONOLINGUAL else _POOL_PARALLEL


def _pools(kinds: np.ndarray) -> np.ndarray:
    return np.where(kinds == BatchKind.MONOLINGUAL, _POOL_ALL, _POOL_PARALLEL)


def _unique(picks: np.ndarray, size: int, rng) -> np.ndarray:
    """Positions in a pool of ``size`` with repeats (an epoch boundary inside the batch) replaced
    by unused positions; ``size`` >= the batch, so there always are some."""
    _, first = np.unique(picks, return_index=True)
    if len(first) == len(picks):
        return picks
    for i in np.setdiff1d(np.arange(len(picks)), first):
        free = np.setdiff1d(np.arange(size), picks)
        picks[i] = int(free[rng.integers(len(free))])
    return picks
