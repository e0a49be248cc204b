"""Task instructions at evaluation: the benchmark's (or the configured) instruction goes on the
queries only, and results.json records it; none configured, queries keep the model's prompt."""

from __future__ import annotations

import json

import pytest
from sentence_transformers import SentenceTransformer

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.instructions import TASK_INSTRUCTIONS
from megatron_hybridir.evaluation.loading import load_eval_config
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats


def _config(tmp_path, benchmark, data, model, **extra):
    overrides = [f"benchmark={benchmark}", f"data={data}", f"encoder.model={model}",
                 f"output={tmp_path / 'out'}", "progress=false", "plots=false"]
    config = load_eval_config(None, overrides)
    for key, value in extra.items():
        setattr(config, key, value)
    return config


@pytest.fixture
def prompts_seen(monkeypatch):
    """(first text, prompt) of every SentenceTransformer.encode call."""
    seen = []
    original = SentenceTransformer.encode

    def spy(self, sentences, *args, prompt=None, **kwargs):
        seen.append((sentences[0], prompt))
        return original(self, sentences, *args, prompt=prompt, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", spy)
    return seen


def test_beir_dataset_gets_its_default_on_queries_only(tmp_path, tiny_st_model, prompts_seen):
    data = formats.write_beir(tmp_path / "scifact")
    queries = {json.loads(l)["text"] for l in (data / "queries.jsonl").read_text().splitlines()}
    results = evaluate(_config(tmp_path, "beir", data, tiny_st_model, instruction="default"))
    want = f"Instruct: {TASK_INSTRUCTIONS['scifact'][1]}\nQuery: "
    assert {p for t, p in prompts_seen if t in queries} == {want}
    assert {p for t, p in prompts_seen if t not in queries} == {"passage: "}
    assert results["instruction"] == {"task": "scifact", "instruction": TASK_INSTRUCTIONS["scifact"][1],
                                      "template": "Instruct: {task}\nQuery: {text}",
                                      "query_prompt": want}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["instruction"] == results["instruction"]
    assert saved["encoder"]["query_prompt"] == want and saved["config"]["instruction"] == "default"
    # None configured: the model's own query prompt, as before instructions existed.
    prompts_seen.clear()
    plain = evaluate(_config(tmp_path, "beir", data, tiny_st_model))
    assert {p for t, p in prompts_seen if t in queries} == {"query: "}
    assert plain["instruction"] is None and plain["encoder"]["query_prompt"] == "query: "


def test_lareqa_takes_an_explicit_instruction_and_template(tmp_path, tiny_st_model, prompts_seen):
    data = formats.write_lareqa(tmp_path / "x")
    results = evaluate(_config(tmp_path, "xquad-r", data, tiny_st_model, instruction="Find it",
                               instruction_template="Task: {task} | {text}"))
    assert results["instruction"]["query_prompt"] == "Task: Find it | "
    prompts = [p for _, p in prompts_seen]
    assert prompts.count("Task: Find it | ") == prompts.count("passage: ") == 3   # per language


@pytest.mark.parametrize("extra, message", [
    ({"instruction": "default"}, r"instruction: no documented default for BEIR dataset 'toy'"),
    ({"instruction": "x", "instruction_template": "Instruct: {task}"},
     r"instruction_template: 'Instruct: \{task\}' must end with \{text\}"),
    ({"instruction": " "}, r"instruction: expected a non-empty instruction string"),
])
def test_bad_instruction_settings_name_the_field(tmp_path, tiny_st_model, extra, message):
    with pytest.raises(ConfigError, match=message):
        evaluate(_config(tmp_path, "beir", formats.write_beir(tmp_path / "toy"), tiny_st_model,
                         **extra))


def test_instruction_and_query_prompt_conflict(tmp_path, tiny_st_model):
    config = _config(tmp_path, "nq", formats.write_nq(tmp_path / "nq"), tiny_st_model,
                     instruction="default")
    config.encoder.query_prompt = "q: "
    with pytest.raises(ConfigError, match="instruction and encoder.query_prompt both set"):
        evaluate(config)
