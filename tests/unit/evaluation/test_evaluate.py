"""The evaluation entry point on each benchmark format with a tiny sentence-transformers model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from megatron_hybridir.config import ConfigError
from megatron_hybridir.evaluate import main
from megatron_hybridir.evaluation import encoder as encoder_mod
from megatron_hybridir.evaluation.encoder import Encoder, EncoderConfig
from megatron_hybridir.evaluation.loading import load_eval_config
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats


def _config(tmp_path, benchmark, data, model, **extra):
    overrides = [f"benchmark={benchmark}", f"data={data}", f"encoder.model={model}",
                 f"output={tmp_path / 'out'}", "progress=false"] + [f"{k}={v}" for k, v in extra.items()]
    return load_eval_config(None, overrides)


def test_beir_end_to_end_matches_direct_computation(tmp_path, tiny_st_model):
    data = formats.write_beir(tmp_path / "toy")
    results = evaluate(_config(tmp_path, "beir", data, tiny_st_model, shard_size=7, k=10,
                               measures="[nDCG@10,R@10,RR@10,AP@10]"))
    assert set(results["metrics"]) == {"nDCG@10", "R@10", "RR@10", "AP@10"}
    # Same numbers from a direct in-memory computation with sentence-transformers + ir_measures.
    from sentence_transformers import SentenceTransformer
    from megatron_hybridir.evaluation import loaders, metrics
    task = loaders.load_beir(data)
    model = SentenceTransformer(str(tiny_st_model))
    q = model.encode(task.query_texts, prompt="query: ")
    c = model.encode([task.passage(i) for i in range(30)], prompt="passage: ")
    top = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :10]
    run = {qid: {task.corpus_ids[d]: float(q[i] @ c[d]) for d in top[i]} for i, qid in enumerate(task.query_ids)}
    ref = metrics.ir_metrics(task.qrels, run, ["nDCG@10", "RR@10"])
    assert results["metrics"]["nDCG@10"] == pytest.approx(ref["nDCG@10"], abs=1e-6)
    assert results["metrics"]["RR@10"] == pytest.approx(ref["RR@10"], abs=1e-6)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["metrics"] == results["metrics"] and "faiss-cpu" in saved["versions"]
    assert (tmp_path / "out" / "results.md").read_text().startswith("# beir")


def test_corpus_cache_is_reused(tmp_path, tiny_st_model, monkeypatch):
    data = formats.write_beir(tmp_path / "toy")
    first = evaluate(_config(tmp_path, "beir", data, tiny_st_model))
    calls = []
    original = Encoder.encode_passages
    monkeypatch.setattr(Encoder, "encode_passages", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = evaluate(_config(tmp_path, "beir", data, tiny_st_model))
    assert calls == [] and second["metrics"] == first["metrics"]
    with open(data / "corpus.jsonl", "a") as f:            # a changed corpus is re-encoded
        f.write(json.dumps({"_id": "new", "text": "tower"}) + "\n")
    evaluate(_config(tmp_path, "beir", data, tiny_st_model))
    assert calls


def test_corpus_batches_follow_token_counts_not_characters(tmp_path, tiny_st_model, monkeypatch):
    """Batches are consecutive runs of the token-count order (sentence-transformers would regroup
    them by characters); embeddings equal a plain encode."""
    from megatron_hybridir.evaluation.encoder import encode_corpus

    enc = Encoder(EncoderConfig(model=str(tiny_st_model), batch_size=2))
    # Upper-case words are single tokens; lower-case letters spelled out are one token each.
    texts = ["TOWER RIVER", "t o w", "TOWER", "r i v e r s", "RIVER TOWER TOWER", "a"]
    lengths = enc.token_lengths(texts)
    assert lengths.tolist() == [4, 5, 3, 8, 5, 3]           # [CLS] ... [SEP] included
    batches = []
    original = Encoder.encode_passages
    monkeypatch.setattr(Encoder, "encode_passages",
                        lambda self, t, *a, **k: batches.append(list(t)) or original(self, t, *a, **k))
    shards = encode_corpus(enc, texts.__getitem__, len(texts), tmp_path / "cache", progress=False)
    assert batches == [["r i v e r s", "t o w"], ["RIVER TOWER TOWER", "TOWER RIVER"], ["TOWER", "a"]]
    emb, positions = next(shards.shards())
    plain = enc.model.encode([texts[i] for i in positions], prompt="passage: ")
    np.testing.assert_allclose(emb, plain, atol=1e-6)


def test_nq_and_miracl(tmp_path, tiny_st_model):
    nq = evaluate(_config(tmp_path, "nq", formats.write_nq(tmp_path / "nq"), tiny_st_model, k=20))
    assert set(nq["metrics"]) == {"top1", "top5", "top20"} and nq["metrics"]["top20"] == 1.0
    miracl = evaluate(_config(tmp_path, "miracl", formats.write_miracl(tmp_path / "m"), tiny_st_model))
    assert list(miracl["per_language"]) == ["sw"] and 0 < miracl["metrics"]["nDCG@10"] <= 1


def test_lareqa_settings_bias_and_plots(tmp_path, tiny_st_model):
    data = formats.write_lareqa(tmp_path / "x", drop={"xx": ["0-1"]})
    results = evaluate(_config(tmp_path, "mlqa-r", data, tiny_st_model))  # partially parallel
    assert len(results["settings"]) == 9 and results["setting_counts"]["cross_lingual"] == 6
    assert results["settings"]["en->xx"]["queries"] == 8      # 0-1 has no answer in xx
    m = results["metrics"]
    assert 0 < m["mono_mAP"] <= 1 and 0 <= m["rank_distance"] <= 26
    assert np.array(results["matrix"]["map"]).shape == (3, 3)
    for name in ("map_heatmap.png", "per_language.png", "results.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_cli_errors_name_the_field(tmp_path, tiny_st_model, capsys):
    assert main(["benchmark=msmarco", f"data={tmp_path}", f"encoder.model={tiny_st_model}"]) == 2
    assert "benchmark: expected one of" in capsys.readouterr().err
    assert main(["benchmark=beir", f"data={tmp_path}/none", f"encoder.model={tiny_st_model}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key"):
        load_eval_config(None, ["benchmark=beir", "encoder.nope=1"])
    assert main(["benchmark=beir", f"data={tmp_path}", f"encoder.model={tiny_st_model}",
                 f"output={tmp_path}/o"]) == 2
    assert "missing corpus.jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_without_megatron(tmp_path, tiny_st_model):
    """The evaluation CLI must not import Megatron-Core (an exported model is evaluated anywhere)."""
    data = formats.write_lareqa(tmp_path / "x")
    code = ("import sys; sys.modules['megatron'] = None; "
            "from megatron_hybridir.evaluate import main; "
            f"sys.exit(main(['benchmark=lareqa', 'data={data}', 'encoder.model={tiny_st_model}', "
            f"'output={tmp_path}/o', 'plots=false', 'progress=false']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mono_mAP" in proc.stdout
