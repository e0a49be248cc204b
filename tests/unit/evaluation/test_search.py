"""Sharded exact search equals in-memory search exactly; ANN indexes find the neighbours."""

import numpy as np
import pytest

from megatron_hybridir.evaluation import search
from megatron_hybridir.evaluation.encoder import write_shards


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("shard_size", [7, 100, 1000])
def test_sharded_equals_in_memory_exactly(tmp_path, shard_size):
    rng = np.random.default_rng(0)
    corpus, queries = _unit(rng, 1000, 16), _unit(rng, 30, 16)
    order = rng.permutation(1000)            # shards hold rows in a different order, as after sorting
    chunks = [(corpus[order[s:s + shard_size]], order[s:s + shard_size])
              for s in range(0, 1000, shard_size)]
    shards = write_shards(tmp_path / "s", iter(chunks), 16, 1000, float16=False)
    got_s, got_i = search.exact_search(queries, shards.shards(), k=25)
    ref_s, ref_i = search.exact_search(queries, [(corpus, np.arange(1000))], k=25)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_s, ref_s)
    brute = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(got_i, brute)


def test_k_larger_than_shards_and_float16(tmp_path):
    rng = np.random.default_rng(1)
    corpus, queries = _unit(rng, 10, 8), _unit(rng, 3, 8)
    shards = write_shards(tmp_path / "s", iter([(corpus[:4], np.arange(4)), (corpus[4:], np.arange(4, 10))]),
                          8, 10, float16=True)
    scores, ids = search.exact_search(queries, shards.shards(), k=10)
    assert sorted(ids[0].tolist()) == list(range(10))
    half = corpus.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(ids, np.argsort(-(queries @ half.T), axis=1, kind="stable"))


def test_merge_topk_tie_break_and_padding():
    s, i = search.merge_topk(np.array([[1.0, -np.inf]], np.float32), np.array([[5, -1]]),
                             np.array([[1.0, 0.5]], np.float32), np.array([[2, 9]]), k=3)
    assert i.tolist() == [[2, 5, 9]] and s.tolist() == [[1.0, 1.0, 0.5]]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hnsw", "ivf", "IVF16,PQ8x4"])   # a small PQ keeps training fast
def test_approximate_indexes(kind):
    rng = np.random.default_rng(2)
    corpus = _unit(rng, 4000, 32)
    queries = corpus[:50] + 0.01 * rng.normal(size=(50, 32)).astype(np.float32)
    shards = [(corpus[:2000], np.arange(2000)), (corpus[2000:], np.arange(2000, 4000))]
    _, ids = search.approximate_search(queries, shards, 10, kind, 32, 4000, nprobe=256)
    hit = np.mean(ids[:, 0] == np.arange(50))
    assert hit >= (0.9 if "PQ" not in kind else 0.5)


def test_factory_strings():
    assert search.factory_string("pq", 768, 21_000_000) == "IVF18330,PQ64"
    assert search.factory_string("ivf", 32, 4000) == "IVF252,Flat"
    assert search.factory_string("OPQ16,IVF64,PQ16", 32, 10) == "OPQ16,IVF64,PQ16"


@pytest.mark.parametrize("kind", ["flat", "exact", "hnsw"])
def test_runner_matryoshka_and_miner_search_alike(tmp_path, monkeypatch, kind):
    """The three call sites build their index from one IndexSpec and return the same top-k."""
    from types import SimpleNamespace

    from megatron_hybridir.evaluation import matryoshka, runner
    from megatron_hybridir.evaluation.config import EvalConfig
    from megatron_hybridir.mining.miner import MiningConfig, validate_mining

    rng = np.random.default_rng(3)
    corpus, queries = _unit(rng, 300, 16), _unit(rng, 12, 16)
    order = rng.permutation(300)
    shards = write_shards(tmp_path / "s", iter([(corpus[order[s:s + 64]], order[s:s + 64])
                                               for s in range(0, 300, 64)]), 16, 300, float16=False)
    config = EvalConfig(index=kind, k=20, progress=False, output=str(tmp_path))
    monkeypatch.setattr(runner, "encode_corpus", lambda *a, **kw: shards)
    encoder = SimpleNamespace(encode_queries=lambda texts, progress: queries)
    task = SimpleNamespace(query_texts=["q"] * 12, passage=None, corpus_ids=list(range(300)))
    via_runner = runner._retrieve(config, encoder, task, {})
    via_matryoshka = matryoshka.search_truncated(config, queries, shards, 16)
    mining = MiningConfig(input="x", output="y.jsonl", languages=["en"], model="m", index=kind)
    validate_mining(mining)                     # both names are valid in mining too
    via_miner = search.SearchIndex(search.spec_of(mining), shards.shards, 16, 300).search(queries, 20)
    for scores, ids in (via_matryoshka, via_miner):
        np.testing.assert_array_equal(ids, via_runner[1])
        np.testing.assert_allclose(scores, via_runner[0], rtol=0, atol=1e-6)
    if kind != "hnsw":
        brute = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :20]
        np.testing.assert_array_equal(via_runner[1], brute)


def test_index_spec_names_and_bad_values():
    assert search.IndexSpec("flat") == search.IndexSpec("exact") and search.IndexSpec("flat").exact
    assert search.IndexSpec("hnsw", hnsw_m=16).factory(32, 100) == "HNSW16,Flat"
    assert search.IndexSpec("ivf", nlist=8).factory(32, 100) == "IVF8,Flat"
    with pytest.raises(ValueError, match=r"nprobe: expected an integer >= 1, got 0"):
        search.IndexSpec("ivf", nprobe=0)
    with pytest.raises(ValueError, match=r"index: expected one of \['exact', 'ivf', 'hnsw', 'pq'\]"):
        search.IndexSpec("")
