"""Per-dimension evaluation of Matryoshka embeddings from one encoding of the corpus.

Why it exists: a Matryoshka model is evaluated at several truncations (``encoder.truncate_dim``,
e.g. [64, 256]) to choose the index size; re-encoding a 21M-passage corpus per dimension would
multiply the most expensive step. The full embeddings are encoded (and cached on disk) once;
each dimension takes the prefix of the stored vectors and renormalises it (cosine similarity, as in
training, ``megatron_hybridir/matryoshka.py``), then searches and scores exactly as the full run.

What it does not do: encode (``encoder``), search (``search``) or score (``metrics``); the runner
passes its own scoring function.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from megatron_hybridir.evaluation import search


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """First ``dim`` components, L2-renormalised (rows of zeros stay zero). [n, d] -> [n, dim]."""
    prefix = np.asarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(prefix, axis=1, keepdims=True)
    return prefix / np.maximum(norms, 1e-12)


def check_dims(dims: Sequence[int], full: int) -> list[int]:
    from megatron_hybridir.config import ConfigError

    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= full:
            raise ConfigError(f"encoder.truncate_dim[{i}]: expected an integer in [1, {full}] "
                              f"(the model's embedding size), got {d!r}")
    return list(dims)


def _truncated_shards(shards, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for emb, positions in shards.shards():
        yield truncate(emb, dim), positions


def search_truncated(config, queries: np.ndarray, shards, dim: int):
    """The runner's search (exact or approximate) over the truncated, renormalised vectors."""
    return search.search(truncate(queries, dim), lambda: _truncated_shards(shards, dim),
                         min(config.k, shards.size), search.spec_of(config), dim, shards.size)


def score_per_dimension(config, task, encoded: dict, score: Callable) -> dict[str, dict]:
    """{str(dim): metrics} for a retrieval task whose full queries / shards are in ``encoded``."""
    return {str(d): score(config, task, *search_truncated(config, encoded["queries"],
                                                          encoded["shards"], d))
            for d in check_dims(config.encoder.truncate_dim, encoded["shards"].dim)}


class MemoEncoder:
    """Remembers each encode call's output, so that the same texts are encoded once."""

    def __init__(self, encoder):
        self.encoder, self._memo = encoder, {}

    def _get(self, kind: str, texts, progress: bool) -> np.ndarray:
        key = (kind, tuple(texts))
        if key not in self._memo:
            method = getattr(self.encoder, f"encode_{kind}")
            self._memo[key] = method(texts, progress=progress)
        return self._memo[key]

    def encode_queries(self, texts, progress: bool = False) -> np.ndarray:
        return self._get("queries", texts, progress)

    def encode_passages(self, texts, progress: bool = False) -> np.ndarray:
        return self._get("passages", texts, progress)


class TruncatedEncoder:
    """A view of a :class:`MemoEncoder` that returns truncated, renormalised embeddings."""

    def __init__(self, memo: MemoEncoder, dim: int):
        self.memo, self.dim = memo, dim

    def encode_queries(self, texts, progress: bool = False) -> np.ndarray:
        return truncate(self.memo.encode_queries(texts, progress), self.dim)

    def encode_passages(self, texts, progress: bool = False) -> np.ndarray:
        return truncate(self.memo.encode_passages(texts, progress), self.dim)
