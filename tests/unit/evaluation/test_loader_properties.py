"""Property-based tests (hypothesis) of the BEIR loader: a random clean folder with at most one
random defect (a duplicate id or judgement, a wrong type, broken JSON, a non-UTF-8 byte, a bad
relevance, a judgement for an unknown id). With no defect the task equals what was written; with
one, the error is an EvalDataError naming the file and line of the defect (or the unknown id) —
never a bare exception, never a silently different task."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megatron_hybridir.evaluation.loaders import load_beir
from megatron_hybridir.evaluation.tasks import EvalDataError

IDS = st.text(alphabet="abcxyz019é中_-", min_size=1, max_size=6)
TEXT = st.text(min_size=1, max_size=10).filter(lambda t: t.strip())

DEFECTS = ["none", "dup corpus id", "dup query id", "dup judgement", "corpus id type",
           "corpus text type", "title type", "query text type", "bad json", "not an object",
           "non-utf8", "qrels columns", "qrels relevance", "qrels fraction", "unknown doc"]


@st.composite
def beir_cases(draw):
    doc_ids = draw(st.lists(IDS, min_size=2, max_size=6, unique=True))
    query_ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    corpus = [{"_id": d, "title": draw(TEXT), "text": draw(TEXT)} for d in doc_ids]
    queries = [{"_id": q, "text": draw(TEXT)} for q in query_ids]
    qrels = [(q, d, draw(st.integers(0, 3))) for q in query_ids
             for d in draw(st.lists(st.sampled_from(doc_ids), min_size=1, max_size=2, unique=True))]
    lines = {"corpus.jsonl": [json.dumps(r).encode() for r in corpus],
             "queries.jsonl": [json.dumps(r).encode() for r in queries],
             "qrels/test.tsv": [b"query-id\tcorpus-id\tscore"] +
                               [f"{q}\t{d}\t{s}".encode() for q, d, s in qrels]}
    defect = draw(st.sampled_from(DEFECTS))
    where = None                       # (file, 1-based line) the error must name
    if defect != "none":
        where = _apply(draw, defect, lines, corpus, queries, qrels)
    return lines, defect, where, (corpus, queries, qrels)


def _insert(draw, lines, name, line: bytes, after: int = 0):
    at = draw(st.integers(after, len(lines[name])))
    lines[name].insert(at, line)
    return name, at + 1


def _apply(draw, defect, lines, corpus, queries, qrels):
    bad_value = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                          st.none(), st.booleans())
    if defect == "dup corpus id":
        first = draw(st.integers(0, len(corpus) - 1))
        return _insert(draw, lines, "corpus.jsonl", json.dumps({"_id": corpus[first]["_id"], "text": "x"}).encode(),
                       after=first + 1)
    if defect == "dup query id":
        first = draw(st.integers(0, len(queries) - 1))
        return _insert(draw, lines, "queries.jsonl", json.dumps({"_id": queries[first]["_id"], "text": "x"}).encode(),
                       after=first + 1)
    if defect == "dup judgement":
        first = draw(st.integers(0, len(qrels) - 1))
        q, d, _ = qrels[first]
        return _insert(draw, lines, "qrels/test.tsv", f"{q}\t{d}\t1".encode(), after=first + 2)
    if defect == "corpus id type":
        value = draw(st.one_of(st.floats(), st.booleans(), st.lists(st.integers(), max_size=2), st.none()))
        return _insert(draw, lines, "corpus.jsonl", json.dumps({"_id": value, "text": "t"}).encode())
    if defect in ("corpus text type", "title type"):
        key = "text" if defect == "corpus text type" else "title"
        record = {"_id": "fresh-doc", "text": "t", key: draw(bad_value.filter(lambda v: v is not None or key == "text"))}
        return _insert(draw, lines, "corpus.jsonl", json.dumps(record).encode())
    if defect == "query text type":
        return _insert(draw, lines, "queries.jsonl", json.dumps({"_id": "fresh-q", "text": draw(bad_value)}).encode())
    name = draw(st.sampled_from(["corpus.jsonl", "queries.jsonl"]))
    if defect == "bad json":
        return _insert(draw, lines, name, b'{"_id": "x", "text": ')
    if defect == "not an object":
        return _insert(draw, lines, name, json.dumps(draw(st.one_of(st.integers(), st.lists(st.integers())))).encode())
    if defect == "non-utf8":
        return _insert(draw, lines, name, b'{"_id": "x", "text": "caf\xe9"}')
    if defect == "qrels columns":
        return _insert(draw, lines, "qrels/test.tsv", b"only\ttwo", after=1)
    if defect in ("qrels relevance", "qrels fraction"):
        score = draw(st.sampled_from(["high", "x1"] if defect == "qrels relevance" else ["0.5", "nan", "inf", "2.25"]))
        return _insert(draw, lines, "qrels/test.tsv", f"{qrels[0][0]}\t{qrels[0][1]}x\t{score}".encode(), after=1)
    if defect == "unknown doc":
        lines["qrels/test.tsv"].append(f"{qrels[0][0]}\tno-such-doc\t1".encode())
        return "qrels/test.tsv", None
    raise AssertionError(defect)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beir_cases())
def test_beir_loader_names_the_defect_or_returns_exactly_the_input(case):
    lines, defect, where, (corpus, queries, qrels) = case
    folder = Path(tempfile.mkdtemp(prefix="beir-prop-"))
    (folder / "qrels").mkdir()
    for name, content in lines.items():
        (folder / name).write_bytes(b"\n".join(content) + b"\n")
    if defect == "none":
        task = load_beir(folder)
        assert task.corpus_ids == [r["_id"] for r in corpus]
        assert task.corpus_texts == [r["text"] for r in corpus]
        judged = {q for q, _, _ in qrels}
        assert task.query_ids == [r["_id"] for r in queries if r["_id"] in judged]
        assert task.qrels == {q: {d: s for q2, d, s in qrels if q2 == q} for q in judged}
        return
    with pytest.raises(EvalDataError) as err:
        load_beir(folder)
    message = str(err.value)
    name, line = where
    if line is None:
        assert "'no-such-doc'" in message and "not in the corpus" in message
    else:
        assert message.startswith(f"{folder / name}:{line}: "), (defect, message)


@st.composite
def miracl_nq_cases(draw):
    """A MIRACL folder or an NQ (DPR) folder with, maybe, one duplicate id, non-UTF-8 line or
    wrong column count at a random line."""
    kind = draw(st.sampled_from(["miracl", "nq"]))
    doc_ids = draw(st.lists(IDS, min_size=2, max_size=6, unique=True))
    query_ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    texts = [draw(TEXT).replace("\t", " ").replace("\n", " ").replace("\r", " ").replace('"', "'")
             for _ in doc_ids]
    texts = [t if t.strip() else "x" for t in texts]
    if kind == "miracl":
        files = {"miracl-corpus-v1.0-sw/docs-0.jsonl": [json.dumps({"docid": d, "title": "", "text": t}).encode()
                                                      for d, t in zip(doc_ids, texts)],
                 "miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv": [f"{q}\tquestion {q}".encode()
                                                                         for q in query_ids],
                 "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv": [f"{q}\tQ0\t{doc_ids[i % len(doc_ids)]}\t1".encode()
                                                                       for i, q in enumerate(query_ids)]}
    else:
        files = {"psgs_w100.tsv": [b"id\ttext\ttitle"] + [f"{d}\t{t}\tT".encode() for d, t in zip(doc_ids, texts)],
                 "nq-test.qa.csv": [f"question {q}\t['a']".encode() for q in query_ids]}
    defect = draw(st.sampled_from(["none", "duplicate", "non-utf8", "columns"]))
    where = None
    if defect != "none":
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name]
        header = 1 if name == "psgs_w100.tsv" else 0
        if defect == "duplicate" and name != "nq-test.qa.csv":   # NQ question ids are line numbers
            first = draw(st.integers(header, len(lines) - 1))
            dup = lines[first] if not name.endswith("qrels.miracl-v1.0-sw-dev.tsv") else lines[first]
            at = draw(st.integers(first + 1, len(lines)))
            lines.insert(at, dup)
            where = (name, at + 1)
        elif defect == "non-utf8":
            at = draw(st.integers(header, len(lines)))
            lines.insert(at, b"caf\xe9\tx\ty" if name != "miracl-corpus-v1.0-sw/docs-0.jsonl"
                         else b'{"docid": "z", "text": "caf\xe9"}')
            where = (name, at + 1)
        elif defect == "columns" and not name.endswith(".jsonl"):
            at = draw(st.integers(header, len(lines)))
            lines.insert(at, b"one column only")
            where = (name, at + 1)
    return kind, files, where


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(miracl_nq_cases())
def test_miracl_and_nq_loaders_name_the_defect_or_load_exactly(case):
    from megatron_hybridir.evaluation.loaders import load_miracl, load_nq

    kind, files, where = case
    root = Path(tempfile.mkdtemp(prefix=f"{kind}-prop-"))
    for name, lines in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\n".join(lines) + b"\n")
    load = (lambda: load_miracl(root, "sw")) if kind == "miracl" else (lambda: load_nq(root))
    if where is None:
        task = load()
        corpus = files.get("miracl-corpus-v1.0-sw/docs-0.jsonl") or files["psgs_w100.tsv"][1:]
        assert len(task.corpus_ids) == len(corpus)
        return
    with pytest.raises(EvalDataError) as err:
        load()
    assert str(err.value).startswith(f"{root / where[0]}:{where[1]}: "), str(err.value)
