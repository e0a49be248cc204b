"""Positive-aware filtering and rank-window sampling of search candidates (pure numpy).

Why it exists: this is where "never mine a positive" is decided, so it is one small function the
tests drive directly. For a block of queries of one language, candidates arrive in search order
(descending score, lower position first on ties) and are removed, in this order, when they are

  positive      the item's own positive (same pool position),
  duplicate     another copy of it (same content id: NFKC, case-fold, whitespace collapsed),
  translation   a copy of the item's positive in another language (its content id),
  repeated      a copy of a higher-ranked surviving candidate (one text is never picked twice),
  absolute_margin   score >= score(q, p) - delta,
  relative_margin   score >= score(q, p) - (1 - m) * |score(q, p)|  (= m * score(q, p) for a
                    non-negative positive score; NV-Retriever's m = 0.95),

each count taken over the candidates still in. The survivors keep their order; ranks
``[range_min, range_max)`` of the survivors form the window, and k negatives are the window's first
k (``top``) or k drawn without replacement with a generator seeded by (seed, language, item), so the
choice does not depend on block sizes or on resuming (``random``).

What it does not do: search or encode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from megatron_hybridir.data.content_id import NO_ID

FILTERS = ("positive", "duplicate", "translation", "repeated", "absolute_margin", "relative_margin")


@dataclass
class WindowSpec:
    num_negatives: int
    range_min: int = 0
    range_max: int = 100
    relative_margin: float | None = None
    absolute_margin: float | None = None
    sampling: str = "random"     # random | top
    seed: int = 0


@dataclass
class Selection:
    positions: np.ndarray        # [nq, k] pool positions, -1 where fewer than k were found
    scores: np.ndarray           # [nq, k] their scores, nan where absent
    removed: dict                # filter -> candidates it removed
    short: int                   # queries left with fewer than k negatives


def _repeated(cids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mask of kept candidates whose content id a higher-ranked kept candidate already has."""
    out = np.zeros_like(keep)
    masked = np.where(keep, cids, NO_ID)
    ordered = np.sort(masked, axis=1)
    dup_rows = np.flatnonzero(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != NO_ID))
                              .any(axis=1))
    for row in dup_rows:                       # rare: only rows holding a repeated text
        seen = set()
        for col in np.flatnonzero(keep[row]):
            cid = int(cids[row, col])
            if cid in seen:
                out[row, col] = True
            seen.add(cid)
    return out


def filter_candidates(positions: np.ndarray, scores: np.ndarray, pool_ids: np.ndarray,
                      own_position: np.ndarray, positive_ids: np.ndarray, lang_column: int,
                      positive_scores: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, dict]:
    """Keep-mask [nq, depth] over the candidates and the count removed by each filter.

    ``positive_ids`` [nq, L]: content id of the item's positive in every language (NO_ID if absent);
    column ``lang_column`` is the searched language.
    """
    keep = positions >= 0
    cids = np.where(keep, np.asarray(pool_ids)[np.maximum(positions, 0)], NO_ID)
    own_cid = positive_ids[:, lang_column][:, None]
    others = np.delete(positive_ids, lang_column, axis=1)
    tests = {
        "positive": positions == own_position[:, None],
        "duplicate": cids == own_cid,
        "translation": ((cids[:, :, None] == others[:, None, :]) & (others[:, None, :] != NO_ID)
                        ).any(axis=2) if others.size else np.zeros_like(keep),
    }
    removed = {}
    for name in FILTERS:
        if name == "repeated":
            hit = _repeated(cids, keep)
        elif name == "absolute_margin":
            if spec.absolute_margin is None:
                continue
            hit = scores >= (positive_scores - spec.absolute_margin)[:, None]
        elif name == "relative_margin":
            if spec.relative_margin is None:
                continue
            pos = positive_scores[:, None]
            hit = scores >= pos - (1.0 - spec.relative_margin) * np.abs(pos)
        else:
            hit = tests[name]
        hit &= keep
        removed[name] = int(hit.sum())
        keep &= ~hit
    return keep, removed


def select_window(positions: np.ndarray, scores: np.ndarray, keep: np.ndarray, items: np.ndarray,
                  lang_index: int, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """k negatives per query from survivor ranks [range_min, range_max)."""
    nq, k = positions.shape[0], spec.num_negatives
    rank = np.cumsum(keep, axis=1) - 1
    window = keep & (rank >= spec.range_min) & (rank < spec.range_max)
    out_pos = np.full((nq, k), -1, dtype=np.int64)
    out_scores = np.full((nq, k), np.nan, dtype=np.float32)
    short = 0
    for row in range(nq):
        cols = np.flatnonzero(window[row])
        if len(cols) > k and spec.sampling == "random":
            rng = np.random.default_rng([spec.seed, lang_index, int(items[row])])
            cols = np.sort(rng.choice(cols, size=k, replace=False))
        cols = cols[:k]
        out_pos[row, :len(cols)] = positions[row, cols]
        out_scores[row, :len(cols)] = scores[row, cols]
        short += len(cols) < k
    return out_pos, out_scores, short


def select_negatives(positions, scores, pool_ids, own_position, positive_ids, lang_column,
                     positive_scores, items, spec: WindowSpec) -> Selection:
    keep, removed = filter_candidates(positions, scores, pool_ids, own_position, positive_ids,
                                      lang_column, positive_scores, spec)
    out_pos, out_scores, short = select_window(positions, scores, keep, items, lang_column, spec)
    return Selection(out_pos, out_scores, removed, short)
