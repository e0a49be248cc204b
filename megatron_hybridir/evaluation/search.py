"""FAISS search over corpus embeddings streamed from disk shards.

Why it exists: exact inner-product search is the default (scores are what the model computes), and a
corpus's embeddings may exceed RAM. :func:`exact_search` loads one shard at a time into a flat FAISS
index (on the GPU, sharded over all GPUs, when faiss-gpu is installed), searches it, and merges the
shard's top-k into a running top-k, so memory is bounded by one shard plus [queries, k] arrays and the
result is identical to searching the whole matrix at once. Ties are broken by the lower corpus
position everywhere, which makes the result deterministic. :func:`approximate_search` builds IVF /
HNSW / PQ indexes (FAISS factory strings) for 21M-passage corpora.

Evaluation (the runner and its Matryoshka truncations) and hard-negative mining all search through
:class:`SearchIndex` (or :func:`search`), configured by one :class:`IndexSpec`, so the exact-or-FAISS
choice and its names live here only. ``exact`` is the canonical name of exact search; ``flat`` (the
name evaluation used) is accepted as an alias.

What it does not do: compute metrics (``metrics.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

log = logging.getLogger(__name__)
_GPU_NOTICE = []
TRAIN_SIZE = 262_144      # vectors an approximate index is trained on, at most
TRAIN_SHARDS = 4          # an approximate index is trained on (a sample of) the first shards
EXACT = "exact"
KIND_ALIASES = {"flat": EXACT}   # evaluation's older name for exact search
NAMED_KINDS = (EXACT, "ivf", "hnsw", "pq")

Shards = Iterable[tuple[np.ndarray, np.ndarray]]      # (embeddings [n, d], corpus positions [n])


@dataclass(frozen=True)
class IndexSpec:
    """How to search: exact (sharded flat) or a FAISS index and its knobs.

    ``kind``: ``exact`` (alias ``flat``), ``ivf``, ``hnsw``, ``pq`` or any FAISS factory string.
    ``nlist``: IVF lists (default 4 * sqrt(corpus size), at most 65536); ``nprobe``: lists visited
    per query; ``hnsw_m``: HNSW links per node; ``ef_search``: HNSW search breadth. The aliases are
    resolved on construction, so ``spec.kind`` is always canonical.
    """

    kind: str = EXACT
    nprobe: int = 64
    ef_search: int = 256
    nlist: Optional[int] = None
    hnsw_m: int = 32

    def __post_init__(self):
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise ValueError(f"index: expected one of {list(NAMED_KINDS)} (or flat, an alias of "
                             f"exact) or a FAISS factory string, got {self.kind!r}")
        object.__setattr__(self, "kind", KIND_ALIASES.get(self.kind, self.kind))
        for name in ("nprobe", "ef_search", "nlist", "hnsw_m"):
            value = getattr(self, name)
            if name == "nlist" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")

    @property
    def exact(self) -> bool:
        return self.kind == EXACT

    def factory(self, dim: int, size: int) -> str:
        """The FAISS factory string for ``dim``-dimensional vectors and a corpus of ``size``."""
        return factory_string(self.kind, dim, size, nlist=self.nlist, hnsw_m=self.hnsw_m)


def _faiss():
    import faiss
    return faiss


def gpu_count() -> int:
    faiss = _faiss()
    count = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if count == 0 and not _GPU_NOTICE:
        _GPU_NOTICE.append(True)
        log.info("faiss: no GPU build or no GPU visible; searching on the CPU (faiss-cpu)")
    return count


def _flat_index(dim: int, use_gpu: bool):
    faiss = _faiss()
    index = faiss.IndexFlatIP(dim)
    if use_gpu:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True              # each GPU holds a slice of the shard
        index = faiss.index_cpu_to_all_gpus(index, co=options)
    return index


def merge_topk(scores_a: np.ndarray, ids_a: np.ndarray, scores_b: np.ndarray, ids_b: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of two candidate lists, by descending score then ascending id (id -1 = empty)."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    by_id = np.argsort(np.where(ids < 0, np.iinfo(np.int64).max, ids), axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, by_id, 1), np.take_along_axis(ids, by_id, 1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def exact_search(queries: np.ndarray, shards: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
                 use_gpu: Optional[bool] = None, rows_per_add: int = 262_144
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product over (embeddings, corpus positions) shards; returns (scores, positions)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
    nq = queries.shape[0]
    best_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    best_ids = np.full((nq, k), -1, dtype=np.int64)
    for emb, positions in shards:
        index = _flat_index(queries.shape[1], use_gpu)
        for start in range(0, len(positions), rows_per_add):   # float16 shards convert piecewise
            index.add(np.ascontiguousarray(emb[start:start + rows_per_add], dtype=np.float32))
        kk = min(k, index.ntotal)
        scores, local = index.search(queries, kk)
        ids = np.where(local >= 0, np.asarray(positions)[np.maximum(local, 0)], -1)
        best_scores, best_ids = merge_topk(best_scores, best_ids, scores, ids, k)
        del index
    return best_scores, best_ids


def factory_string(kind: str, dim: int, size: int, nlist: Optional[int] = None,
                   hnsw_m: int = 32) -> str:
    """FAISS factory strings for the named index kinds; anything else is passed through."""
    nlist = nlist or max(1, min(65_536, int(4 * math.sqrt(size))))
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "hnsw":
        return f"HNSW{hnsw_m},Flat"
    if kind == "pq":
        m = next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim)
        return f"IVF{nlist},PQ{m}"
    return kind


def spec_of(config) -> IndexSpec:
    """The :class:`IndexSpec` of a config with ``index`` / ``nprobe`` / ``ef_search`` / ``nlist`` /
    ``hnsw_m`` fields (``EvalConfig``, ``MiningConfig``)."""
    return IndexSpec(kind=config.index, nprobe=config.nprobe, ef_search=config.ef_search,
                     nlist=config.nlist, hnsw_m=config.hnsw_m)


class SearchIndex:
    """One corpus made searchable once, searched many times (mining searches per query block).

    ``shards`` is called for a fresh pass over the (embeddings, positions) shards: exact search reads
    them again per :meth:`search` (memory: one shard); a FAISS index is trained on a seeded sample of
    at most ``TRAIN_SIZE`` vectors from the first ``TRAIN_SHARDS`` shards and holds every vector.
    """

    def __init__(self, spec: IndexSpec, shards: Callable[[], Shards], dim: int, size: int,
                 seed: int = 0, train_size: int = TRAIN_SIZE):
        self.spec, self._shards, self.dim = spec, shards, dim
        self._index = None if spec.exact else self._build(size, seed, train_size)

    def _build(self, size: int, seed: int, train_size: int):
        faiss = _faiss()
        factory = self.spec.factory(self.dim, size)
        inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIDMap(inner)
        if not index.is_trained:
            first = [np.asarray(e, dtype=np.float32) for e, _ in _first(self._shards(), TRAIN_SHARDS)]
            sample = np.concatenate(first)
            if len(sample) > train_size:
                rng = np.random.default_rng(seed)
                sample = sample[rng.choice(len(sample), train_size, replace=False)]
            index.train(sample)
        for emb, positions in self._shards():
            index.add_with_ids(np.ascontiguousarray(emb, dtype=np.float32), np.asarray(positions))
        if "IVF" in factory:
            faiss.extract_index_ivf(inner).nprobe = self.spec.nprobe
        if "HNSW" in factory:
            faiss.downcast_index(inner).hnsw.efSearch = self.spec.ef_search
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [q, k], corpus positions [q, k]; -1 where fewer exist) by inner product."""
        if self._index is None:
            return exact_search(queries, self._shards(), k)
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def _first(shards: Shards, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i, shard in enumerate(shards):
        if i >= n:
            return
        yield shard


def search(queries: np.ndarray, shards: Callable[[], Shards], k: int, spec: IndexSpec, dim: int,
           size: int) -> tuple[np.ndarray, np.ndarray]:
    """Build the index ``spec`` names over ``shards`` and return its top-k for ``queries``."""
    return SearchIndex(spec, shards, dim, size).search(queries, k)


def approximate_search(queries: np.ndarray, shards: Shards, k: int, kind: str, dim: int, size: int,
                       nprobe: int = 64, ef_search: int = 256, train_size: int = TRAIN_SIZE,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Build an IVF / HNSW / PQ index (trained on the first shards), add every shard, search."""
    shard_list = list(shards)
    spec = IndexSpec(kind=kind, nprobe=nprobe, ef_search=ef_search)
    return SearchIndex(spec, lambda: iter(shard_list), dim, size, seed=seed,
                       train_size=train_size).search(queries, k)
