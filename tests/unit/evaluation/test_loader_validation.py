"""Evaluation loaders (issue 16 item 4): a repeated query, document or judgement stops with the
file, line, id and the first occurrence, in every loader; wrong types and non-UTF-8 bytes too."""

from __future__ import annotations

import gzip
import json

import pytest

from megatron_hybridir.evaluation import loaders
from megatron_hybridir.evaluation.tasks import EvalDataError
from tests.unit.evaluation import formats


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def _error(load, *args) -> str:
    with pytest.raises(EvalDataError) as err:
        load(*args)
    return str(err.value)


def test_beir_duplicate_query_id(tmp_path):
    folder = formats.write_beir(tmp_path / "b")
    _append(folder / "queries.jsonl", json.dumps({"_id": "q3", "text": "another question"}) + "\n")
    path = folder / "queries.jsonl"
    assert _error(loaders.load_beir, folder) == f"{path}:9: duplicate query id 'q3' (first at {path}:4)"


def test_beir_duplicate_corpus_id_and_integer_ids(tmp_path):
    folder = formats.write_beir(tmp_path / "b")
    path = folder / "corpus.jsonl"
    _append(path, json.dumps({"_id": 7, "text": "x"}) + "\n")     # integer 7 is '7', not 'd7'
    _append(path, json.dumps({"_id": "d7", "text": "y"}) + "\n")
    assert _error(loaders.load_beir, folder) == f"{path}:32: duplicate corpus id 'd7' (first at {path}:8)"


def test_beir_duplicate_judgement(tmp_path):
    folder = formats.write_beir(tmp_path / "b")
    path = folder / "qrels" / "test.tsv"
    _append(path, "q2\td2\t0\n")
    assert _error(loaders.load_beir, folder) == (
        f"{path}:18: duplicate judgement for (query, document) ('q2', 'd2') (first at {path}:6)")


@pytest.mark.parametrize("line,message", [
    ('{"_id": ["a"], "text": "x"}', "field '_id' must be a string or an integer, got list ['a']"),
    ('{"_id": "z", "text": 5}', "field 'text' must be a string, got int 5"),
    ('{"_id": "z", "text": "x", "title": 3}', "field 'title' must be a string, got int 3"),
    ('{"_id": true, "text": "x"}', "field '_id' must be a string or an integer, got bool True"),
    ('[1, 2]', "expected a JSON object, got list"),
])
def test_beir_wrong_types(tmp_path, line, message):
    folder = formats.write_beir(tmp_path / "b")
    _append(folder / "corpus.jsonl", line + "\n")
    assert _error(loaders.load_beir, folder) == f"{folder / 'corpus.jsonl'}:31: {message}"


@pytest.mark.parametrize("score", ["1.5", "nan", "inf"])
def test_beir_relevance_must_be_an_integer_grade(tmp_path, score):
    folder = formats.write_beir(tmp_path / "b")
    path = folder / "qrels" / "test.tsv"
    _append(path, f"q1\td5\t{score}\n")
    assert _error(loaders.load_beir, folder) == f"{path}:18: relevance {score!r} is not an integer grade"


def test_beir_non_utf8_line(tmp_path):
    folder = formats.write_beir(tmp_path / "b")
    with open(folder / "queries.jsonl", "ab") as f:
        f.write('{"_id": "q9", "text": "caf\u00e9"}\n'.encode("latin-1"))
    assert _error(loaders.load_beir, folder) == (
        f"{folder / 'queries.jsonl'}:9: not valid UTF-8 (byte 0xe9 at column 27); re-encode the file "
        f"as UTF-8")


def test_nq_duplicate_passage_id(tmp_path):
    folder = formats.write_nq(tmp_path / "nq")
    path = folder / "psgs_w100.tsv"
    _append(path, "4\tanother text\tTitle\n")
    assert _error(loaders.load_nq, folder) == f"{path}:22: duplicate passage id '4' (first at {path}:6)"


def test_miracl_duplicate_topic_docid_and_judgement(tmp_path):
    root = formats.write_miracl(tmp_path / "m")
    topics = root / "miracl-v1.0-sw" / "topics" / "topics.miracl-v1.0-sw-dev.tsv"
    _append(topics, "2\tanother\n")
    assert _error(loaders.load_miracl, root, "sw") == (
        f"{topics}:5: duplicate query id '2' (first at {topics}:3)")

    root = formats.write_miracl(tmp_path / "m2")
    qrels = root / "miracl-v1.0-sw" / "qrels" / "qrels.miracl-v1.0-sw-dev.tsv"
    _append(qrels, "1\tQ0\t6#0\t1\n")
    assert _error(loaders.load_miracl, root, "sw") == (
        f"{qrels}:9: duplicate judgement for (query, document) ('1', '6#0') (first at {qrels}:4)")

    root = formats.write_miracl(tmp_path / "m3")
    shard = root / "miracl-corpus-v1.0-sw" / "docs-1.jsonl.gz"   # the same docid in a second shard
    with gzip.open(shard, "wt") as f:
        f.write(json.dumps({"docid": "x#0", "text": "x"}) + "\n")
        f.write(json.dumps({"docid": "3#0", "text": "again"}) + "\n")
    first = root / "miracl-corpus-v1.0-sw" / "docs-0.jsonl.gz"
    assert _error(loaders.load_miracl, root, "sw") == (
        f"{shard}:2: duplicate docid '3#0' (first at {first}:4)")


def test_lareqa_duplicate_question_id(tmp_path):
    folder = formats.write_lareqa(tmp_path / "x", languages=("en",))
    data = json.loads((folder / "en.json").read_text())
    data["data"][0]["paragraphs"][2]["qas"][0]["id"] = "0-1"
    (folder / "en.json").write_text(json.dumps(data))
    path = folder / "en.json"
    assert _error(loaders.load_lareqa, folder) == (
        f"{path} data[0].paragraphs[2] question '0-1': duplicate question id '0-1' (first at "
        f"{path} data[0].paragraphs[0] question '0-1')")


def test_hub_duplicates_name_the_rows(monkeypatch):
    import datasets

    tables = {("BeIR/toy", "corpus"): {"_id": ["d1", "d2"], "title": ["", ""], "text": ["a", "b"]},
              ("BeIR/toy", "queries"): {"_id": ["q1", "q2", "q1"], "text": ["x", "y", "z"]},
              ("BeIR/toy-qrels", None): {"query-id": ["q1", "q2"], "corpus-id": ["d1", "d2"],
                                         "score": [1, 1]}}

    def fake(name, config=None, split=None):
        return datasets.Dataset.from_dict(tables[(name, config)])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert _error(loaders.load_beir_hub, "toy") == (
        "hub BeIR/toy queries row 2: duplicate query id 'q1' (first at hub BeIR/toy queries row 0)")


def _mutate_lareqa(folder, edit):
    path = folder / "en.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _pop(d, key):
    d.pop(key)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["data"][0]["paragraphs"][1]["sentences"].pop(),
     "data[0].paragraphs[1]: 2 'sentences' but 3 'sentence_breaks'; expected one break per sentence"),
    (lambda d: _pop(d["data"][0]["paragraphs"][0]["qas"][1]["answers"][0], "answer_start"),
     "data[0].paragraphs[0].qas[1] (id '0-1'): missing field 'answers[0].answer_start'"),
    (lambda d: _pop(d["data"][0]["paragraphs"][2]["qas"][0], "id"),
     "data[0].paragraphs[2].qas[0]: missing field 'id'"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][2]["answers"][0].update(answer_start="12"),
     "data[0].paragraphs[0].qas[2] (id '0-2'): field 'answers[0].answer_start' must be an "
     "integer, got str '12'"),
    (lambda d: d["data"][0]["paragraphs"][1]["qas"][0].update(id=["a"]),
     "data[0].paragraphs[1].qas[0]: field 'id' must be a string or an integer, got list ['a']"),
    (lambda d: d["data"][0]["paragraphs"][1]["sentence_breaks"].__setitem__(1, [9]),
     "data[0].paragraphs[1]: field 'sentence_breaks[1]' must be [begin, end] with integers "
     "0 <= begin <= end, got [9]"),
    (lambda d: d["data"][0]["paragraphs"][0]["sentences"].__setitem__(0, 7),
     "data[0].paragraphs[0]: field 'sentences[0]' must be a string, got int 7"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"].__setitem__(0, "x"),
     "data[0].paragraphs[0].qas[0] (id '0-0'): field 'answers[0]' must be an object, got str 'x'"),
    (lambda d: d["data"][0]["paragraphs"][2].update(qas={"id": 1}),
     "data[0].paragraphs[2]: field 'qas' must be a list, got dict {'id': 1}"),
    (lambda d: d["data"][0]["paragraphs"].append(3),
     "data[0].paragraphs[3]: field 'paragraph' must be an object, got int 3"),
    (lambda d: _pop(d["data"][0]["paragraphs"][1], "context"),
     "data[0].paragraphs[1]: missing field 'context'"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(question="\ud800?"),
     "data[0].paragraphs[0].qas[0] (id '0-0'): field 'question' holds a lone surrogate "
     "('\\ud800' at character 0), not Unicode text"),
])
def test_lareqa_malformed_fields_name_file_paragraph_question_and_field(tmp_path, edit, message):
    """issue 24 item 15: these ended in a bare IndexError / KeyError / TypeError, or (fewer
    sentences than breaks) in an answer taken from the next paragraph."""
    folder = formats.write_lareqa(tmp_path / "x", languages=("en",))
    path = _mutate_lareqa(folder, edit)
    assert _error(loaders.load_lareqa, folder) == f"{path} {message}"


@pytest.mark.parametrize("content,message", [
    (b'{"data": {"title": "t"}}', "expected a SQuAD-style JSON object with a 'data' list"),
    (b'[1, 2]', "expected a SQuAD-style JSON object with a 'data' list"),
    (b'{"data": [' + b"[" * 100_000 + b"]", "not valid JSON"),
    (b'{"data": ["x"]}', "data[0]: field 'article' must be an object, got str 'x'"),
])
def test_lareqa_malformed_files(tmp_path, content, message):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "en.json").write_bytes(content)
    assert _error(loaders.load_lareqa, folder).startswith(f"{folder / 'en.json'}")
    assert message in _error(loaders.load_lareqa, folder)


def test_corrupt_gzip_shard_and_open_quote_name_the_file(tmp_path):
    root = formats.write_miracl(tmp_path / "m")
    shard = root / "miracl-corpus-v1.0-sw" / "docs-0.jsonl.gz"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 2])
    assert _error(loaders.load_miracl, root, "sw").startswith(f"{shard}:")
    assert "not a valid gzip stream" in _error(loaders.load_miracl, root, "sw")
    folder = formats.write_nq(tmp_path / "nq")
    _append(folder / "nq-test.qa.csv", "who\t[{[]: 1}]\n")          # literal_eval: TypeError
    assert _error(loaders.load_nq, folder) == (
        f"{folder / 'nq-test.qa.csv'}:6: answers '[{{[]: 1}}]' are not a Python/JSON list of strings")
    folder = formats.write_nq(tmp_path / "nq2")
    _append(folder / "nq-test.qa.csv", "who\t[]\n")                   # no answer: never a hit
    assert _error(loaders.load_nq, folder) == (
        f"{folder / 'nq-test.qa.csv'}:6: answers must be a non-empty list of non-empty strings, "
        f"got '[]'")
