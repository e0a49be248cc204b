"""Fuzz (hypothesis) of the LAReQA, MIRACL and NQ loaders, like the readers' property tests in
tests/unit/data: valid files, then random damage — a JSON value replaced by any other, a key
dropped, bytes inserted, deleted or cut off, a line repeated, a gzip stream broken. Each load either
returns a task that holds the invariants scoring relies on, or raises EvalDataError naming the file;
never a bare KeyError / IndexError / TypeError / UnicodeDecodeError / csv.Error."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megatron_hybridir.evaluation.loaders import load_lareqa, load_miracl, load_nq
from megatron_hybridir.evaluation.tasks import EvalDataError

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORD = st.text(alphabet="abcé中 \t?.", min_size=1, max_size=8).filter(lambda t: t.strip())
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=6) | st.sampled_from(["\ud800", "", " "]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
RAW = st.binary(max_size=12) | st.sampled_from([b"\t", b"\n", b'"', b"\xff", b"\x00", b"[", b"{",
                                                 b"\r", b"\\", b"'"])


def _strings_are_text(*groups) -> bool:
    for group in groups:
        for text in group:
            if not isinstance(text, str):
                return False
            text.encode("utf-8")            # a lone surrogate would raise here
    return True


@st.composite
def damaged_bytes(draw, content: bytes) -> bytes:
    kind = draw(st.sampled_from(["insert", "delete", "truncate", "repeat line", "replace"]))
    at = draw(st.integers(0, len(content)))
    if kind == "insert":
        return content[:at] + draw(RAW) + content[at:]
    if kind == "delete":
        return content[:at] + content[at + draw(st.integers(1, 8)):]
    if kind == "truncate":
        return content[:at]
    if kind == "repeat line":
        lines = content.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
        return b"\n".join(lines)
    return content[:at] + draw(RAW) + content[at + draw(st.integers(1, 4)):]


# --- LAReQA -------------------------------------------------------------------------------------

@st.composite
def lareqa_document(draw) -> dict:
    paragraphs = []
    for p in range(draw(st.integers(1, 3))):
        sentences = draw(st.lists(WORD, min_size=1, max_size=3))
        context, breaks = "", []
        for s in sentences:
            breaks.append([len(context), len(context) + len(s)])
            context += s + " "
        qas = [{"id": f"{p}-{s}", "question": draw(WORD),
                "answers": [{"text": "x", "answer_start": breaks[s][0]}]}
               for s in draw(st.sets(st.integers(0, len(sentences) - 1), max_size=2))]
        paragraphs.append({"context": context, "sentences": sentences, "sentence_breaks": breaks,
                           "qas": qas})
    return {"version": "1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def _paths(value, prefix=()):
    """Every (container, key) in a JSON tree."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield value, key
        yield from _paths(child, prefix + (key,))


@st.composite
def damaged_lareqa(draw) -> bytes:
    doc = draw(lareqa_document())
    kind = draw(st.sampled_from(["none", "replace", "drop", "append", "bytes"]))
    places = list(_paths(doc))
    if kind in ("replace", "drop", "append"):
        container, key = draw(st.sampled_from(places))
        if kind == "replace":
            container[key] = draw(JSON_VALUE)
        elif kind == "drop" and isinstance(container, dict):
            container.pop(key)
        elif kind == "drop":
            container.pop(key)
        elif isinstance(container[key], list):
            container[key].append(draw(JSON_VALUE))
        else:
            container[key] = [container[key], draw(JSON_VALUE)]
    content = json.dumps(doc).encode()
    return draw(damaged_bytes(content)) if kind == "bytes" else content


@FUZZ
@given(en=damaged_lareqa(), de=damaged_lareqa(), parallel=st.booleans())
def test_lareqa_loader_loads_or_names_the_file(en, de, parallel):
    folder = Path(tempfile.mkdtemp(prefix="lareqa-fuzz-"))
    (folder / "en.json").write_bytes(en)
    (folder / "de.json").write_bytes(de)
    try:
        task = load_lareqa(folder, parallel=parallel)
    except EvalDataError as err:
        assert str(folder) in str(err), str(err)
        return
    for lang in task.languages:
        ids = {cid for cid, _, _ in task.candidates[lang]}
        assert set(task.answer[lang]) == set(task.questions[lang])
        assert set(task.answer[lang].values()) <= ids
        assert all(q.strip() for q in task.questions[lang].values())
        assert _strings_are_text(task.questions[lang], task.questions[lang].values(),
                                 [s for _, s, _ in task.candidates[lang]],
                                 [c for _, _, c in task.candidates[lang]])
    if parallel:
        assert set(task.questions["en"]) == set(task.questions["de"])


# --- MIRACL and NQ ------------------------------------------------------------------------------

def _miracl_files(draw) -> dict[str, bytes]:
    docs = draw(st.lists(st.text(alphabet="ab1#", min_size=1, max_size=4), min_size=1, max_size=4,
                         unique=True))
    queries = draw(st.lists(st.text(alphabet="q12", min_size=1, max_size=3), min_size=1,
                            max_size=3, unique=True))
    corpus = "\n".join(json.dumps({"docid": d, "title": draw(WORD), "text": draw(WORD)})
                       for d in docs) + "\n"
    topics = "".join(f"{q}\t{draw(WORD).replace(chr(9), ' ')}\n" for q in queries)
    qrels = "".join(f"{q}\tQ0\t{draw(st.sampled_from(docs))}\t{draw(st.integers(0, 2))}\n"
                    for q in queries)
    return {"miracl-corpus-v1.0-sw/docs-0.jsonl.gz": gzip.compress(corpus.encode()),
            "miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv": topics.encode(),
            "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv": qrels.encode()}


def _nq_files(draw) -> dict[str, bytes]:
    rows = [f"{i}\t{draw(WORD).replace(chr(9), ' ')}\t{draw(WORD).replace(chr(9), ' ')}"
            for i in range(draw(st.integers(1, 4)))]
    qa = [f"{draw(WORD).replace(chr(9), ' ')}\t{json.dumps([draw(WORD)], ensure_ascii=False)}"
          for _ in range(draw(st.integers(1, 3)))]
    return {"psgs_w100.tsv": ("id\ttext\ttitle\n" + "\n".join(rows) + "\n").encode(),
            "nq-test.qa.csv": ("\n".join(qa) + "\n").encode()}


@st.composite
def damaged_retrieval(draw):
    kind = draw(st.sampled_from(["miracl", "nq"]))
    files = _miracl_files(draw) if kind == "miracl" else _nq_files(draw)
    name = draw(st.sampled_from(sorted(files)))
    if draw(st.integers(0, 4)):                    # mostly damaged; sometimes as written
        content = files[name]
        if name.endswith(".gz") and draw(st.booleans()):   # damage the text inside the stream
            content = gzip.compress(draw(damaged_bytes(gzip.decompress(content))))
        else:
            content = draw(damaged_bytes(content))
        files[name] = content
    return kind, files


@FUZZ
@given(damaged_retrieval())
def test_miracl_and_nq_loaders_load_or_name_the_file(case):
    kind, files = case
    root = Path(tempfile.mkdtemp(prefix=f"{kind}-fuzz-"))
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    try:
        task = load_miracl(root, "sw") if kind == "miracl" else load_nq(root)
    except EvalDataError as err:
        assert str(root) in str(err), str(err)
        return
    assert task.corpus_ids and task.query_ids
    assert len(set(task.corpus_ids)) == len(task.corpus_ids)
    assert len(set(task.query_ids)) == len(task.query_ids)
    assert _strings_are_text(task.corpus_ids, task.corpus_texts, task.query_ids, task.query_texts)
    if kind == "miracl":
        assert set(task.query_ids) <= set(task.qrels)
        assert all(set(rels) <= set(task.corpus_ids) for rels in task.qrels.values())
        assert all(isinstance(v, int) for rels in task.qrels.values() for v in rels.values())
    else:
        assert set(task.answers) == set(task.query_ids)
        assert all(a and all(isinstance(x, str) and x.strip() for x in a)
                   for a in task.answers.values())
