"""FAISS search over corpus embeddings streamed from disk shards.

Why it exists: exact inner-product search is the default (scores are what the model computes), and a
corpus's embeddings may exceed RAM. :func:`exact_search` loads one shard at a time into a flat FAISS
index (on the GPU, sharded over all GPUs, when faiss-gpu is installed), searches it, and merges the
shard's top-k into a running top-k, so memory is bounded by one shard plus [queries, k] arrays and the
result is identical to searching the whole matrix at once. Ties are broken by the lower corpus
position everywhere, which makes the result deterministic. :func:`approximate_search` builds IVF /
HNSW / PQ indexes (FAISS factory strings) for 21M-passage corpora.

What it does not do: compute metrics (``metrics.py``).
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Optional

import numpy as np

log = logging.getLogger(__name__)
_GPU_NOTICE = []
TRAIN_SIZE = 262_144      # vectors an approximate index is trained on, at most


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


def factory_string(kind: str, dim: int, size: int) -> str:
    """FAISS factory strings for the named index kinds; anything else is passed through."""
    nlist = max(1, min(65_536, int(4 * math.sqrt(size))))
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "hnsw":
        return "HNSW32,Flat"
    if kind == "pq":
        m = next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim)
        return f"IVF{nlist},PQ{m}"
    return kind


def approximate_search(queries: np.ndarray, shards: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
                       kind: str, dim: int, size: int, nprobe: int = 64, ef_search: int = 256,
                       train_size: int = TRAIN_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Build an IVF / HNSW / PQ index (trained on the first shards), add every shard, search."""
    faiss = _faiss()
    spec = factory_string(kind, dim, size)
    inner = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIDMap(inner)
    shard_list = list(shards)
    if not index.is_trained:
        sample = np.concatenate([np.asarray(e, dtype=np.float32) for e, _ in shard_list[:4]])
        rng = np.random.default_rng(seed)
        if len(sample) > train_size:
            sample = sample[rng.choice(len(sample), train_size, replace=False)]
        index.train(sample)
    for emb, positions in shard_list:
        index.add_with_ids(np.ascontiguousarray(emb, dtype=np.float32), np.asarray(positions))
    if "IVF" in spec:
        faiss.extract_index_ivf(inner).nprobe = nprobe
    if "HNSW" in spec:
        faiss.downcast_index(inner).hnsw.efSearch = ef_search
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids
