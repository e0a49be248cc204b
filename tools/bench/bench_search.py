"""Exact top-k search over a corpus streamed from disk shards, vs BEIR's exact dense search.

Both sides get the same 1,000,000 x 256 unit vectors (float32 .npy shards written once) and the same
10,000 queries, and return the top-100 by inner product:
  ours: ``evaluation.search.exact_search`` — one shard at a time in a FAISS flat index, running
        top-k merge (memory: one shard + [queries, k]);
  BEIR: ``beir.retrieval.search.dense.DenseRetrievalExactSearch`` with a model whose
        ``encode_corpus`` returns the same rows (so only search is timed), chunks of 50,000,
        torch.topk + Python heaps.
Each side runs in a fresh subprocess, so its peak RSS is its own. Prints the speed ratio, the peak
RSS of both, and the top-100 agreement.

    python tools/bench/bench_search.py [--n 1000000] [--queries 10000] [--dim 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_vectors(folder: Path, n: int, nq: int, dim: int, shard: int) -> None:
    from megatron_hybridir.evaluation.encoder import write_shards

    rng = np.random.default_rng(0)

    def chunks():
        for start in range(0, n, shard):
            x = rng.standard_normal((min(shard, n - start), dim), dtype=np.float32)
            yield x / np.linalg.norm(x, axis=1, keepdims=True), np.arange(start, start + len(x))

    write_shards(folder / "corpus", chunks(), dim, n, float16=False)
    q = rng.standard_normal((nq, dim), dtype=np.float32)
    np.save(folder / "queries.npy", q / np.linalg.norm(q, axis=1, keepdims=True))


def run_ours(folder: Path, k: int) -> dict:
    from megatron_hybridir.evaluation.encoder import CorpusShards
    from megatron_hybridir.evaluation.search import exact_search

    queries = np.load(folder / "queries.npy")
    start = time.perf_counter()
    _, ids = exact_search(queries, CorpusShards.open(folder / "corpus").shards(), k)
    seconds = time.perf_counter() - start
    np.save(folder / "ours.npy", ids)
    return {"seconds": seconds}


def run_beir(folder: Path, k: int) -> dict:
    import torch
    from beir.retrieval.search.dense import DenseRetrievalExactSearch
    from megatron_hybridir.evaluation.encoder import CorpusShards

    shards = CorpusShards.open(folder / "corpus")
    mats = [np.load(f, mmap_mode="r") for f in shards.shard_files]
    sizes = np.cumsum([0] + [len(m) for m in mats])
    queries = np.load(folder / "queries.npy")

    class Vectors:     # a "model" that returns the stored vectors for the ids it is asked about
        def encode_queries(self, texts, **_):
            return torch.from_numpy(queries)

        def encode_corpus(self, docs, **_):
            idx = np.array([int(d["text"]) for d in docs])
            shard = np.searchsorted(sizes, idx, side="right") - 1
            return torch.from_numpy(np.stack([mats[s][i - sizes[s]] for s, i in zip(shard, idx)]))

    corpus = {f"d{i}": {"title": "", "text": str(i)} for i in range(shards.size)}
    query_map = {f"q{i}": "" for i in range(len(queries))}
    start = time.perf_counter()
    results = DenseRetrievalExactSearch(Vectors(), corpus_chunk_size=50_000,
                                        show_progress_bar=False).search(corpus, query_map, k, "dot")
    seconds = time.perf_counter() - start
    ids = np.array([[int(d[1:]) for d, _ in sorted(results[f"q{i}"].items(), key=lambda t: -t[1])]
                    for i in range(len(queries))])
    np.save(folder / "beir.npy", ids)
    return {"seconds": seconds}


def _child(side: str, folder: str, k: int) -> None:
    out = (run_ours if side == "ours" else run_beir)(Path(folder), k)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--shard", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child[0], args.child[1], args.k)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_vectors(folder, args.n, args.queries, args.dim, args.shard)
        out = {}
        for side in ("ours", "beir"):
            proc = subprocess.run([sys.executable, __file__, "--k", str(args.k), "--child", side, tmp],
                                  capture_output=True, text=True, check=True)
            out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        ours, beir = np.load(folder / "ours.npy"), np.load(folder / "beir.npy")
        agree = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ours, beir)])
    print(f"exact top-{args.k}, {args.queries} queries x {args.n} x {args.dim} unit vectors on disk")
    print(f"  ours (sharded FAISS flat, {args.shard}/shard): {out['ours']['seconds']:.1f} s, "
          f"peak RSS {out['ours']['peak_rss_mb']:.0f} MB")
    print(f"  BEIR DenseRetrievalExactSearch:           {out['beir']['seconds']:.1f} s, "
          f"peak RSS {out['beir']['peak_rss_mb']:.0f} MB")
    print(f"  speed ours/BEIR = {out['beir']['seconds'] / out['ours']['seconds']:.2f}x; "
          f"top-{args.k} agreement {agree:.4f}")


if __name__ == "__main__":
    main()
