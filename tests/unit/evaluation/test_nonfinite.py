"""Issue 24 item 1 and the cache: non-finite embeddings (a NaN weight, an fp16 overflow, a damaged
cached shard) stop the run with the model / file, the index and the count; no metric ever leaves
its range (an AP of 1.5 from NaN scores); a damaged cache is encoded again, not trusted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from megatron_hybridir.evaluate import main
from megatron_hybridir.evaluation import metrics
from megatron_hybridir.evaluation.encoder import EmbeddingError, Encoder, write_shards
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats
from tests.unit.evaluation.test_evaluate import _config


@pytest.fixture(scope="module")
def nan_model(tiny_st_model, tmp_path_factory):
    """The tiny random BERT with one layer's weight filled with NaN in model.safetensors."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path_factory.mktemp("nan") / "st"
    shutil.copytree(tiny_st_model, folder)
    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if "layer.0.output.dense.weight" in k)
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, folder / "model.safetensors")
    return folder


def test_nan_model_stops_lareqa_instead_of_a_perfect_score(tmp_path, nan_model, capsys):
    data = formats.write_lareqa(tmp_path / "x", languages=("en", "de"))
    code = main(["benchmark=lareqa", f"data={data}", f"encoder.model={nan_model}",
                 f"output={tmp_path / 'out'}", "progress=false", "plots=false"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"error: lareqa language 'de': encoder.model {nan_model}: 9 of 9 query embeddings in "
            f"this batch are not finite (NaN or inf), first at query index 0") in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_nan_model_stops_beir_naming_the_corpus_position(tmp_path, nan_model, monkeypatch):
    data = formats.write_beir(tmp_path / "b")
    # Queries are encoded first; let them through to see the corpus check and its positions.
    original = Encoder.encode_queries
    monkeypatch.setattr(Encoder, "encode_queries",
                        lambda self, t, progress=False: np.ones((len(t), self.dim), np.float32))
    with pytest.raises(EmbeddingError, match=r"30 of 30 passage embeddings in this batch are not "
                                             r"finite \(NaN or inf\), first at passage index \d+"):
        evaluate(_config(tmp_path, "beir", data, nan_model, plots="false",
                         **{"encoder.batch_size": 64}))
    monkeypatch.setattr(Encoder, "encode_queries", original)
    with pytest.raises(EmbeddingError, match="8 of 8 query embeddings"):
        evaluate(_config(tmp_path, "beir", data, nan_model, plots="false"))


def test_corpus_position_is_named_not_the_batch_row():
    from megatron_hybridir.evaluation.encoder import check_finite

    emb = np.ones((4, 3), np.float32)
    emb[2, 1] = np.inf
    with pytest.raises(EmbeddingError, match="1 of 4 passage embeddings .* first at passage index 17"):
        check_finite(emb, model="m", kind="passage", indices=[5, 9, 17, 3])


def test_metrics_never_leave_their_range():
    # NaN scores rank every relevant item first: two relevant at rank 1 gave AP (1/1 + 2/1)/2 = 1.5.
    with pytest.raises(metrics.MetricRangeError, match="outside"):
        metrics.rank_metrics([np.array([1, 1])])
    with pytest.raises(metrics.MetricRangeError, match=r"metric rank: 1 value\(s\) outside"):
        metrics.check_range("rank", [0, 3], 1, 10)
    with pytest.raises(metrics.MetricRangeError):
        metrics.check_range("nDCG@10", [0.5, float("nan")], 0.0, 1.0)
    with pytest.raises(ValueError, match="1 of 2 query embeddings are not finite"):
        metrics.relevant_ranks(np.array([[1.0, 0.0], [np.nan, 0.0]]), np.eye(2), [[0], [1]])
    with pytest.raises(metrics.MetricRangeError, match="rank distance"):
        metrics.language_bias([np.array([2, 2])], [["en", "de"]], ["en"])
    ok = metrics.rank_metrics([np.array([1, 3]), np.array([2])])
    assert ok == {"mAP": pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2), "R@1": 0.25, "R@10": 1.0}


def test_nan_in_a_cached_shard_stops_the_run(tmp_path, tiny_st_model, capsys):
    data = formats.write_beir(tmp_path / "b")
    args = ["benchmark=beir", f"data={data}", f"encoder.model={tiny_st_model}",
            f"output={tmp_path / 'out'}", "progress=false", "plots=false"]
    assert main(args) == 0
    shard = next((tmp_path / "out" / "cache").glob("*/emb_00000.npy"))
    emb = np.load(shard)
    emb[3, 0] = np.nan
    np.save(shard, emb)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {shard}: 1 cached embedding row(s) from row 3 are not finite" in err
    assert "the cache is damaged: delete" in err


@pytest.mark.parametrize("damage", ["missing shard", "truncated shard", "broken meta",
                                    "positions changed"])
def test_damaged_cache_is_encoded_again(tmp_path, tiny_st_model, monkeypatch, damage):
    data = formats.write_beir(tmp_path / "b")
    first = evaluate(_config(tmp_path, "beir", data, tiny_st_model, shard_size=7, plots="false"))
    folder = next(p for p in (tmp_path / "out" / "cache").iterdir() if p.is_dir())
    if damage == "missing shard":
        (folder / "emb_00002.npy").unlink()
    elif damage == "truncated shard":
        raw = (folder / "emb_00001.npy").read_bytes()
        (folder / "emb_00001.npy").write_bytes(raw[:len(raw) // 2])
    elif damage == "broken meta":
        (folder / "meta.json").write_text('{"shards": ["emb_00000.npy"')
    else:
        np.save(folder / "pos_00000.npy", np.zeros(7, dtype=np.int64))
    calls = []
    original = Encoder.encode_passages
    monkeypatch.setattr(Encoder, "encode_passages",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = evaluate(_config(tmp_path, "beir", data, tiny_st_model, shard_size=7, plots="false"))
    assert calls, "a damaged cache must be encoded again"
    assert second["metrics"] == pytest.approx(first["metrics"], abs=1e-6)
    assert json.loads((folder / "meta.json").read_text())["size"] == 30


def test_float16_shards_refuse_values_beyond_float16(tmp_path):
    chunk = (np.array([[1.0, 7e4]], np.float32), np.array([0]))
    with pytest.raises(EmbeddingError, match=r"float16_shards: embeddings reach 7e\+04, beyond "
                                             r"float16's range"):
        write_shards(tmp_path / "c", iter([chunk]), 2, 1, float16=True)
    assert not (tmp_path / "c").exists()
    write_shards(tmp_path / "c", iter([chunk]), 2, 1, float16=False)    # float32 holds it
