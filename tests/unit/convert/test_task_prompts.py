"""Per-task instruction prompts in the export: mteb applies each task's own instruction to its
queries (and the document prompt to its corpus), and ``encode(prompt_name=)`` takes the same name."""

import json

import numpy as np
import pytest

from megatron_hybridir.config.instructions import TASK_INSTRUCTIONS
from megatron_hybridir.convert.export_extras import task_prompts
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import write_hf_model
from tests.unit.convert.test_roundtrip import _toy_mteb_task

SCIFACT = f"Instruct: {TASK_INSTRUCTIONS['scifact'][1]}\nQuery: "
ARGUANA = "Instruct: Find the counter-argument\nQuery: "


def _named_task(name, rng):
    """A local retrieval task under an mteb task name (mteb keeps prompts only for names it knows)."""
    text = lambda n: " ".join(f"w{i}" for i in rng.integers(0, 61, n))  # noqa: E731
    queries = {f"{name}-q{i}": text(3) for i in range(4)}
    docs = {f"{name}-d{i}": text(5) for i in range(8)}
    task = _toy_mteb_task(queries, docs, {q: {f"{name}-d{i}": 1} for i, q in enumerate(queries)})
    task.metadata = task.metadata.model_copy(update={"name": name})
    return task, queries, docs


def test_mteb_applies_each_tasks_instruction_to_its_queries(tmp_path, megatron_runtime):
    import mteb
    from sentence_transformers import SentenceTransformer

    converted = import_hf(write_hf_model(tmp_path / "hf", "llama3"), tmp_path / "meg", dtype="fp32",
                          head=ImportHead(pooling="mean"))
    out = export_hf(converted, tmp_path / "out", query_prompt="Query: ", passage_prompt="Passage: ",
                    task_instructions={"ArguAna": "Find the counter-argument"})
    prompts = json.loads((out / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["SciFact-query"] == SCIFACT and prompts["ArguAna-query"] == ARGUANA
    assert prompts["query"] == "Query: " and prompts["document"] == "Passage: "

    model = SentenceTransformer(str(out), device="cpu")
    seen = []                    # (task of the texts, prompt) of every call mteb makes
    for method in ("encode_query", "encode_document"):
        original = getattr(model, method)

        def spy(texts, *args, _original=original, **kwargs):
            first = texts[0] if isinstance(texts, list) else next(iter(texts))["text"][0]
            seen.append((first, kwargs.get("prompt")))
            return _original(texts, *args, **kwargs)

        setattr(model, method, spy)
    rng = np.random.default_rng(0)
    (scifact, sq, sd), (arguana, aq, ad) = _named_task("SciFact", rng), _named_task("ArguAna", rng)
    mteb.evaluate(model, [scifact, arguana], cache=None, show_progress_bar=False)
    by_prompt = {}
    for first, prompt in seen:
        by_prompt.setdefault(prompt, set()).add(first)
    assert by_prompt[SCIFACT] <= set(sq.values()) and by_prompt[ARGUANA] <= set(aq.values())
    assert by_prompt["Passage: "] <= set(sd.values()) | set(ad.values())
    assert set(by_prompt) == {SCIFACT, ARGUANA, "Passage: "}
    # The same name works for sentence-transformers itself.
    np.testing.assert_allclose(model.encode(["w1 w2"], prompt_name="SciFact-query"),
                               model.encode([SCIFACT + "w1 w2"]), atol=1e-6)


def test_task_prompts_follow_the_training_data():
    instructed = {"data": {"instructions": {"template": "Task: {task} | {text}",
                                            "sources": {"a.jsonl": "x"}}}}
    assert task_prompts({"data": {"instructions": None}}) == {}       # today's exports
    assert task_prompts(None) == {}
    prompts = task_prompts(instructed)
    assert prompts["MIRACLRetrieval-query"] == f"Task: {TASK_INSTRUCTIONS['miracl'][1]} | "
    assert {"NQ-query", "XQuADRetrieval-query", "MLQARetrieval-query", "SciFact-query"} <= set(prompts)
    assert task_prompts(None, task_instructions={}) == task_prompts(
        {"data": {"instructions": {"template": "Instruct: {task}\nQuery: {text}"}}})
    with pytest.raises(ConversionError, match=r"task_instructions\['NQ'\]: expected a non-empty"):
        task_prompts(None, task_instructions={"NQ": ""})
    with pytest.raises(ConversionError, match=r"task_instructions: 'query' is not a task name"):
        task_prompts(None, task_instructions={"query": "x"})
    with pytest.raises(ConversionError, match=r"instruction_template: 'Q: \{task\}' must end"):
        task_prompts(None, task_instructions={}, instruction_template="Q: {task}")


def test_a_run_on_instructed_data_exports_task_prompts_in_its_template(tmp_path):
    """The trainer copies the manifest's ``instructions`` into the run's provenance.json; export
    reads them from there (no flag), in the template the data were tokenized with."""
    from megatron_hybridir.config import RunConfig
    from megatron_hybridir.training.run_identity import write_run_provenance

    manifest = {"prompts": {"query": "Query: ", "positive": "", "negative": ""},
                "instructions": {"template": "Task: {task} | {text}", "sources": {"a.jsonl": "x"}}}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run").mkdir()
    config = RunConfig()
    config.data.path = str(tmp_path / "data")
    record = write_run_provenance(tmp_path / "run", config, manifest)
    assert record["data"]["instructions"] == manifest["instructions"]
    assert task_prompts(record)["NQ-query"] == f"Task: {TASK_INSTRUCTIONS['nq'][1]} | "
    del manifest["instructions"]                       # data without instructions: none
    assert task_prompts(write_run_provenance(tmp_path / "run", config, manifest)) == {}
