"""Task instructions at preprocessing: one per source, on queries only, recorded in the manifest;
rows stay ``tokenize(prompt + text)`` and nothing changes without instructions."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from megatron_hybridir.data.dataset import TokenizedDataset
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.data.tokenizer import Tokenizer
from tests.unit.data.conftest import LANGS

INSTRUCTION = "Given a question retrieve passages"
TOOL = Path(__file__).resolve().parents[3] / "tools" / "preprocess_data.py"


@pytest.fixture
def tokenizer(tmp_path, corpus):
    """Word-level, with the template's and the instruction's words in the vocabulary (an <unk>
    would hide a missing word)."""
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [line for p in corpus for line in p.read_text().splitlines()]
    tok.train_from_iterator(texts + ["Query: Passage: Instruct: Task: " + INSTRUCTION],
                            trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>"]))
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    return str(tmp_path / "tok")


def _prep(tmp_path, corpus, tokenizer, name="out", **kw):
    out = tmp_path / name
    manifest = preprocess(PreprocessConfig(sources=[str(p) for p in corpus], languages=LANGS,
                                           tokenizer=tokenizer, output=str(out), workers=1,
                                           chunk_size=5, **kw), progress=False)
    return TokenizedDataset(str(out)), manifest


def _rows(ds: TokenizedDataset, field: str) -> list[list[int]]:
    return [ds._data[(field, lang)][r].tolist() for lang in LANGS if (field, lang) in ds._data
            for r in range(len(ds._data[(field, lang)]))]


def test_instruction_goes_on_its_sources_queries_only(tmp_path, corpus, tokenizer):
    train, mono = map(str, corpus)
    plain, plain_manifest = _prep(tmp_path, corpus, tokenizer, "plain")
    ds, manifest = _prep(tmp_path, corpus, tokenizer, instructions={train: INSTRUCTION})
    tok = Tokenizer(tokenizer)
    prompt = f"Instruct: {INSTRUCTION}\nQuery: "
    # items 0-23 come from train.jsonl (instructed), 24-29 from mono_en.jsonl ("Query: ")
    assert ds.tokens("query", 5, LANGS.index("de")).tolist() == tok.encode(
        [prompt + "de question 5"])[0]
    assert ds.tokens("query", 27, LANGS.index("en")).tolist() == tok.encode(
        ["Query: en only 3"])[0] == plain.tokens("query", 27, LANGS.index("en")).tolist()
    assert ds.tokens("query", 5, 1).tolist() != plain.tokens("query", 5, 1).tolist()
    for field in ("positive", "negative"):           # passages keep their prompt
        assert _rows(ds, field) == _rows(plain, field)
    assert [(s["instruction"], s["query_prompt"]) for s in manifest["sources"]] == [
        (INSTRUCTION, prompt), (None, "Query: ")]
    assert manifest["instructions"] == {"template": "Instruct: {task}\nQuery: {text}",
                                        "sources": {train: INSTRUCTION}}
    assert manifest["prompts"] == plain_manifest["prompts"]
    # Without instructions: the rows of today, "Query: " + text; the manifest has no entry.
    assert "instructions" not in plain_manifest
    assert ds.num_items == plain.num_items == 30
    for item in (0, 5, 24, 29):
        text = f"en question {item}" if item < 24 else f"en only {item - 24}"
        assert plain.tokens("query", item, 0).tolist() == tok.encode(["Query: " + text])[0]


def test_custom_template_and_cli(tmp_path, corpus, tokenizer, capsys):
    train, mono = map(str, corpus)
    argv = ["--sources", train, mono, "--languages", *LANGS, "--tokenizer", tokenizer,
            "--output", str(tmp_path / "cli"), "--workers", "1",
            "--instruction", f"{mono}={INSTRUCTION}",
            "--instruction-template", r"Task: {task}\nQuery: {text}"]
    runpy.run_path(str(TOOL))["main"](argv)
    ds = TokenizedDataset(str(tmp_path / "cli"))
    assert ds.manifest["instructions"]["template"] == "Task: {task}\nQuery: {text}"
    assert ds.tokens("query", 27, 0).tolist() == Tokenizer(tokenizer).encode(
        [f"Task: {INSTRUCTION}\nQuery: en only 3"])[0]
    assert ds.manifest["sources"][0]["instruction"] is None


@pytest.mark.parametrize("kw, message", [
    ({"instructions": {"nope.jsonl": "x"}},
     r"preprocess: instructions: 'nope.jsonl' is not one of the sources"),
    ({"instructions": {"@train": ""}}, r"preprocess: instructions\[.*train.jsonl'\]: expected a "
                                       r"non-empty instruction string, got ''"),
    ({"instruction_template": "Instruct: {task}\nQuery:"},
     r"preprocess: instruction_template: 'Instruct: \{task\}\\nQuery:' must end with \{text\}"),
    ({"instruction_template": "{text} {task}"}, r"must end with \{text\}"),
    ({"instruction_template": "Query: {text}"}, r"instruction_template: .* must hold \{task\} once"),
    ({"instruction_template": "{task} {lang} {text}"}, r"no field but \{task\} and \{text\}"),
])
def test_bad_instruction_settings_name_the_field(tmp_path, corpus, tokenizer, kw, message):
    if "@train" in kw.get("instructions", {}):
        kw = {"instructions": {str(corpus[0]): ""}}
    with pytest.raises(ValueError, match=message):
        _prep(tmp_path, corpus, tokenizer, **kw)
    assert not (tmp_path / "out" / "manifest.json").exists()
