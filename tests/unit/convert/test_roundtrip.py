"""HF -> Megatron -> HF for each family on CPU: hidden states, embeddings, exact round trip, errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import WORDS, load_tool, write_hf_model

TEXTS = ["Query: w1 w2 w3", "Passage: w4 w5 w6 w7 w8 w9", "w10", "w11 w12 w13 w14 w15 w16 w17 w18"]


def _ids(texts):
    rows = [[WORDS.index(w) for w in t.split()] for t in texts]
    length = max(map(len, rows))
    ids = torch.tensor([r + [0] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=torch.bool)
    return ids, mask


def load_megatron(folder):
    from megatron.core import dist_checkpointing
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.model.builder import build_model

    model_cfg, ckpt, _ = resolve_checkpoint(folder)
    model = build_model(model_cfg, ParallelConfig())
    state = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(ckpt))
    model.load_state_dict(state["model"])
    return model.eval()


def hf_hidden(folder, causal):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder)).eval()
    model.config.is_causal = causal
    ids, mask = _ids(TEXTS)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask.long()).last_hidden_state, mask


@pytest.mark.parametrize("family", ["llama", "llama3", "mistral", "qwen2", "qwen3"])
def test_import_gives_hf_hidden_states_and_export_round_trips(tmp_path, megatron_runtime, family):
    hf = write_hf_model(tmp_path / "hf", family, shards=family == "llama")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", head=ImportHead(attention="causal"))
    model = load_megatron(converted)
    ids, mask = _ids(TEXTS)
    with torch.no_grad():
        ours = model(ids, mask, return_hidden=True)
    ref, _ = hf_hidden(hf, causal=True)
    diff = (ours - ref)[mask].abs().max().item()
    assert diff < 1e-5, diff
    out = export_hf(converted, tmp_path / "out")
    from safetensors.torch import load_file
    original = {}
    for f in sorted(hf.glob("*.safetensors")):
        original.update({k.removeprefix("model."): v for k, v in load_file(f).items()
                         if not k.startswith("lm_head")})
    exported = {}
    for f in sorted(out.glob("*.safetensors")):
        exported.update(load_file(f))
    assert set(exported) == set(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name


def test_bidirectional_export_matches_megatron_embeddings(tmp_path, megatron_runtime):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig

    # Llama: transformers 5 rebuilds Qwen2 tokenizers from the vocabulary whatever tokenizer.json says,
    # which would break this toy word-level tokenizer (real Qwen2 tokenizers are unaffected).
    hf = write_hf_model(tmp_path / "hf", "llama3")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32",
                          head=ImportHead(pooling="mean", projection_dim=16))
    model = load_megatron(converted)
    out = export_hf(converted, tmp_path / "out", query_prompt="Query: ")
    assert AutoConfig.from_pretrained(str(out)).is_causal is False
    ids, mask = _ids(TEXTS)
    with torch.no_grad():
        ours = model(ids, mask).numpy()
        hidden = model(ids, mask, return_hidden=True)
    ref, _ = hf_hidden(out, causal=False)
    assert (hidden - ref)[mask].abs().max().item() < 1e-5
    st = SentenceTransformer(str(out), device="cpu")
    theirs = st.encode(TEXTS, batch_size=4)
    assert np.abs(theirs - ours).max() < 1e-5
    assert st.prompts["query"] == "Query: " and theirs.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)


def _toy_mteb_task(queries: dict, docs: dict, qrels: dict):
    """An mteb retrieval task over in-memory texts (mteb's own tasks download their data)."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    class ToyRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="HybridirToyRetrieval", description="exported-model check", reference=None,
            dataset={"path": "NA", "revision": "NA"}, type="Retrieval", category="t2t",
            modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
            main_score="ndcg_at_10", date=None, domains=None, task_subtypes=None, license=None,
            annotations_creators=None, dialect=None, sample_creation=None, bibtex_citation=None)

        def load_data(self, **kwargs):
            self.dataset = {"default": {"test": RetrievalSplitData(
                queries=Dataset.from_list([{"id": k, "text": v} for k, v in queries.items()]),
                corpus=Dataset.from_list([{"id": k, "text": v, "title": ""} for k, v in docs.items()]),
                relevant_docs=qrels, top_ranked=None)}}
            self.data_loaded = True

    return ToyRetrieval()


@pytest.mark.slow
def test_mteb_evaluates_the_export_with_its_prompts(tmp_path, megatron_runtime):
    """mteb runs the exported folder as a model, applying the query and the passage ("document")
    prompts: its scores equal ir_measures on the Megatron model's own embeddings of prompt + text."""
    import ir_measures
    import mteb
    from sentence_transformers import SentenceTransformer

    converted = import_hf(write_hf_model(tmp_path / "hf", "llama3"), tmp_path / "meg", dtype="fp32",
                          head=ImportHead(pooling="mean", projection_dim=16))
    out = export_hf(converted, tmp_path / "out", query_prompt="Query: ", passage_prompt="Passage: ")
    rng = np.random.default_rng(0)
    text = lambda n: " ".join(f"w{i}" for i in rng.integers(0, 61, n))  # noqa: E731
    queries = {f"q{i}": text(rng.integers(2, 6)) for i in range(12)}
    docs = {f"d{i}": text(rng.integers(3, 10)) for i in range(40)}
    qrels = {q: {f"d{j}": 1 for j in rng.choice(40, 2, replace=False)} for q in queries}

    result = mteb.evaluate(SentenceTransformer(str(out), device="cpu"),
                           _toy_mteb_task(queries, docs, qrels), cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]

    model = load_megatron(converted)
    with torch.no_grad():
        q = model(*_ids(["Query: " + t for t in queries.values()])).numpy()
        d = model(*_ids(["Passage: " + t for t in docs.values()])).numpy()
    sim = q @ d.T
    run = {qid: {did: float(sim[i, j]) for j, did in enumerate(docs)} for i, qid in enumerate(queries)}
    measures = {"ndcg_at_10": ir_measures.nDCG @ 10, "map_at_10": ir_measures.AP @ 10,
                "mrr_at_10": ir_measures.RR @ 10, "recall_at_10": ir_measures.R @ 10}
    ours = ir_measures.calc_aggregate(measures.values(), qrels, run)
    for name, measure in measures.items():
        assert scores[name] == pytest.approx(ours[measure], abs=1e-5), name  # mteb rounds to 5 places


def test_errors_before_anything_is_written(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "llama")
    with pytest.raises(ConversionError, match="tensor parallel size 3 does not divide"):
        import_hf(hf, tmp_path / "a", tensor_parallel=3)
    cfg = json.loads((hf / "config.json").read_text())
    bad = tmp_path / "bad"
    shutil.copytree(hf, bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ConversionError, match="model_type 'gpt2' is not supported"):
        import_hf(bad, tmp_path / "b")
    (bad / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 40}))
    with pytest.raises(ConversionError, match=r"mlp.gate_proj.weight has shape \(48, 32\), expected \(40, 32\)"):
        import_hf(bad, tmp_path / "c")
    sharded = write_hf_model(tmp_path / "sharded", "llama", shards=True)
    next(sharded.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(ConversionError, match=r"shard\(s\) \['model-00002"):
        import_hf(sharded, tmp_path / "d")
    assert not [p.name for p in tmp_path.iterdir() if p.name.split(".")[0] in ("a", "b", "c", "d")]
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32")
    with pytest.raises(ConversionError, match="exists"):
        import_hf(hf, tmp_path / "meg")


def test_failed_export_leaves_nothing(tmp_path, megatron_runtime, monkeypatch):
    from megatron_hybridir.convert import hf_export

    converted = import_hf(write_hf_model(tmp_path / "hf", "llama"), tmp_path / "meg", dtype="fp32")
    monkeypatch.setattr(hf_export, "_copy_tokenizer", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        export_hf(converted, tmp_path / "out")
    assert not list(tmp_path.glob("out*"))


def test_tools_verify(tmp_path, megatron_runtime, capsys):

    hf = write_hf_model(tmp_path / "hf", "mistral")
    assert load_tool("convert_hf_to_megatron")(["--hf", str(hf), "--output", str(tmp_path / "meg"),
                                           "--dtype", "fp32", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "hidden states (Megatron vs HF)" in out and "every tensor identical (OK)" in out
    assert load_tool("export_to_hf")(["--checkpoint", str(tmp_path / "meg"), "--output", str(tmp_path / "st"),
                                 "--verify"]) == 0
    assert "embeddings (Megatron vs sentence-transformers)" in capsys.readouterr().out
    assert load_tool("convert_hf_to_megatron")(["--hf", str(hf), "--output", str(tmp_path / "x"),
                                           "--tensor-parallel", "3"]) == 2
    assert "does not divide" in capsys.readouterr().err


def test_training_init_from_a_converted_folder(tmp_path, megatron_runtime):
    """checkpoint.init_from loads the converted weights into a freshly built training model."""
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.checkpointing.model_state import load_model_weights

    hf = write_hf_model(tmp_path / "hf", "qwen3")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", head=ImportHead(attention="causal"))
    model_cfg, _, _ = resolve_checkpoint(converted)
    model = build_model(model_cfg, ParallelConfig()).eval()
    load_model_weights(converted, model=[model])
    ids, mask = _ids(TEXTS)
    with torch.no_grad():
        ours = model(ids, mask, return_hidden=True)
    ref, _ = hf_hidden(hf, causal=True)
    assert (ours - ref)[mask].abs().max().item() < 1e-5
