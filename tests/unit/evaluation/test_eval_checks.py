"""Issue 24 item 16: every evaluation argument is checked before anything is encoded, naming the
field, the value and what is allowed (a spy on the encoder's one entry point shows no call)."""

from __future__ import annotations

import pytest

from megatron_hybridir.config import ConfigError
from megatron_hybridir.evaluation.encoder import Encoder
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats
from tests.unit.evaluation.test_evaluate import _config


@pytest.fixture
def encode_calls(monkeypatch):
    """Texts handed to the model, per call (Encoder._encode is the only path to model.encode)."""
    calls = []
    original = Encoder._encode
    monkeypatch.setattr(Encoder, "_encode",
                        lambda self, texts, *a, **k: calls.append(len(texts)) or original(self, texts, *a, **k))
    return calls


@pytest.mark.parametrize("docs,extra,message", [
    (30, {"measures": "[nDCG@10,Bogus@3]"},
     "measures[1]: 'Bogus@3' is not an ir_measures measure (measure not found: Bogus); expected "
     "e.g. ['nDCG@10', 'R@100', 'RR@10', 'AP@100']"),
    (30, {"measures": "[AP@0]"}, "measures[0]: 'AP@0' has cutoff 0, expected an integer >= 1"),
    (10, {"index": "ivf"},
     "index: 'ivf' (FAISS 'IVF12,Flat') needs at least 12 training vectors, but the b corpus "
     "gives 10 (10 passages, first 4 shards of shard_size=100000); use index=exact or hnsw, or a "
     "larger shard_size"),
    (30, {"index": "pq"}, "index: 'pq' (FAISS 'IVF21,PQ32') needs at least 256 training vectors, "
                          "but the b corpus gives 30"),
    (30, {"index": "ivf", "shard_size": 2},
     "index: 'ivf' (FAISS 'IVF21,Flat') needs at least 21 training vectors, but the b corpus gives 8 "
     "(30 passages, first 4 shards of shard_size=2)"),
    (30, {"index": "IVF8,Bogus"}, "index: 'IVF8,Bogus' (FAISS 'IVF8,Bogus') cannot be built for "
                                  "32-dimensional embeddings"),
    (30, {"encoder.max_length": 100},
     "encoder.max_length: 100 is above what {model} can take; expected an integer in [1, 64]"),
    (30, {"encoder.max_length": 0}, "encoder.max_length: expected an integer >= 1, got 0"),
    (30, {"encoder.batch_size": 0}, "encoder.batch_size: expected an integer >= 1, got 0"),
    (30, {"encoder.truncate_dim": "[8,64]"},
     "encoder.truncate_dim[1]: expected an integer in [1, 32] (the model's embedding size), got 64"),
    (30, {"encoder.truncate_dim": "[8,8]"}, "encoder.truncate_dim: sizes repeat in [8, 8]"),
    (30, {"nprobe": 0}, "nprobe: expected an integer >= 1, got 0"),
    (30, {"k": 5}, "measures[0]: 'nDCG@10' looks 10 deep, but only the top k=5 of 30 passages are "
                   "retrieved; expected a cutoff in [1, 5] or k >= 10"),
    (30, {"k": 20, "measures": "[AP]"},
     "measures[0]: 'AP' looks at the whole ranking, but only the top k=20 of 30 passages are "
     "retrieved; expected a cutoff in [1, 20] or k >= 30"),
])
def test_bad_argument_stops_before_encoding(tmp_path, tiny_st_model, encode_calls, docs, extra,
                                            message):
    data = formats.write_beir(tmp_path / "b", n_docs=docs)
    with pytest.raises(ConfigError) as err:
        evaluate(_config(tmp_path, "beir", data, tiny_st_model, plots="false", **extra))
    assert str(err.value).startswith(message.format(model=tiny_st_model)), str(err.value)
    assert encode_calls == []


def test_full_depth_and_hnsw_still_run(tmp_path, tiny_st_model, encode_calls):
    """k >= corpus size holds the whole ranking (a cutoff-less AP is exact); hnsw needs no training."""
    data = formats.write_beir(tmp_path / "b")
    results = evaluate(_config(tmp_path, "beir", data, tiny_st_model, plots="false", k=30,
                               measures="[AP,nDCG@50]", index="hnsw"))
    assert set(results["metrics"]) == {"AP", "nDCG@50"} and encode_calls


def test_lareqa_truncate_dim_is_checked_before_encoding(tmp_path, tiny_st_model, encode_calls):
    data = formats.write_lareqa(tmp_path / "x")
    with pytest.raises(ConfigError, match=r"encoder.truncate_dim\[0\]: expected an integer in \[1, 32\]"):
        evaluate(_config(tmp_path, "xquad-r", data, tiny_st_model, plots="false",
                         **{"encoder.truncate_dim": "[33]"}))
    assert encode_calls == []


def test_miracl_checks_every_language_before_encoding_the_first(tmp_path, tiny_st_model,
                                                                encode_calls):
    """A problem in the last MIRACL language stops the run before the first language is encoded
    (review finding: it used to surface after the earlier languages' corpora were encoded)."""
    from megatron_hybridir.evaluation.tasks import EvalDataError
    data = formats.write_miracl(tmp_path / "m", "sw")
    with pytest.raises(EvalDataError, match="yo"):
        evaluate(_config(tmp_path, "miracl", data, tiny_st_model, plots="false",
                         languages="[sw,yo]"))
    assert encode_calls == []
