"""Fixture files in each source's own layout, field names, id schemes and file types (no downloads).

mMARCO: ``collections/<language>_collection.tsv`` and ``queries/train/<language>_queries.train.tsv``
(``id<TAB>text``, no header), ``triples.train.ids.small.tsv`` (``qid<TAB>pos<TAB>neg``) and a TREC
``qrels.train.tsv``. Every text embeds its language and id ("de query 1002"), so a test can check
that no text ever sits under another id. Partial alignment on purpose: German lacks query 1003
(its later lines are therefore one line "up"), Chinese lacks passage 2008 (query 1004's positive),
the Chinese queries file is in another order, German lacks negative 2005, passage 2099 exists in no
language and query 1007's positive 2098 in none either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MM_LANGS = {"en": "english", "de": "german", "zh": "chinese"}
QIDS = ["1001", "1002", "1003", "1004", "1005", "1006", "1007"]
PIDS = [str(p) for p in range(2001, 2013)]
TRIPLES = [("1001", "2001", "2002"), ("1001", "2001", "2003"), ("1002", "2004", "2005"),
           ("1003", "2006", "2007"), ("1004", "2008", "2009"), ("1005", "2010", "2011"),
           ("1005", "2010", "2011"), ("1006", "2012", "2099"), ("1007", "2098", "2001")]
MISSING = {("de", "query", "1003"), ("zh", "passage", "2008"), ("de", "passage", "2005")}


def query_text(lang: str, qid: str) -> str:
    return f"{lang} query {qid}"


def passage_text(lang: str, pid: str) -> str:
    return f"{lang} passage {pid}"


def write_lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def mmarco_tables() -> dict:
    """{lang: ([(qid, text)], [(pid, text)])} in file order, the gaps of MISSING applied."""
    out = {}
    for lang in MM_LANGS:
        queries = [(q, query_text(lang, q)) for q in QIDS if (lang, "query", q) not in MISSING]
        if lang == "zh":
            queries = queries[::-1]
        passages = [(p, passage_text(lang, p)) for p in PIDS if (lang, "passage", p) not in MISSING]
        out[lang] = (queries, passages)
    return out


@pytest.fixture
def mmarco_root(tmp_path) -> Path:
    """``data/v2``-like folder plus ``data/triples.train.ids.small.tsv`` and ``qrels.train.tsv``."""
    data = tmp_path / "mmarco" / "data"
    root = data / "v2"
    for lang, (queries, passages) in mmarco_tables().items():
        name = MM_LANGS[lang]
        write_lines(root / "queries" / "train" / f"{name}_queries.train.tsv",
                    (f"{q}\t{t}" for q, t in queries))
        write_lines(root / "collections" / f"{name}_collection.tsv",
                    (f"{p}\t{t}" for p, t in passages))
    write_lines(data / "triples.train.ids.small.tsv", ("\t".join(t) for t in TRIPLES))
    write_lines(data / "qrels.train.tsv", (f"{q}\t0\t{p}\t1" for q, p, _ in TRIPLES))
    return root


def miracl_rows(lang: str = "sw") -> list[dict]:
    def psg(docid, body):
        return {"docid": docid, "title": f"Title {docid}", "text": body}

    return [
        {"query_id": "0", "query": f"{lang} swali 0",
         "positive_passages": [psg("10#0", "jibu 0"), psg("10#1", "jibu 0b")],
         "negative_passages": [psg("11#0", "si 0"), psg("10#1", "jibu 0b"), psg("12#0", "si 0c")]},
        {"query_id": "1", "query": f"{lang} swali 1", "positive_passages": [],
         "negative_passages": [psg("13#0", "si 1")]},
        {"query_id": "2", "query": f"{lang} swali 2", "positive_passages": [psg("14#0", "jibu 2")],
         "negative_passages": []},
        {"query_id": "0", "query": f"{lang} swali 0 again",
         "positive_passages": [psg("15#0", "jibu x")], "negative_passages": []},
        {"query_id": "3", "query": "leaked miracl topic",
         "positive_passages": [psg("16#0", "jibu 3")], "negative_passages": []},
    ]


def dpr_elements() -> list[dict]:
    def ctx(pid, title, text, key="passage_id"):
        return {"title": title, "text": text, "score": 1000, "title_score": 1, key: pid}

    return [
        {"dataset": "nq_train_psgs_w100", "question": "who wrote the iliad", "answers": ["Homer"],
         "positive_ctxs": [ctx("11", "Iliad", "The Iliad is attributed to Homer.")],
         "negative_ctxs": [ctx("12", "Odyssey", "Random other text.")],
         "hard_negative_ctxs": [ctx("13", "Troy", "Troy was a city.", "psg_id"),
                                ctx("11", "Iliad", "The Iliad is attributed to Homer.")]},
        {"dataset": "nq_train_psgs_w100", "question": "Where is the Eiffel   tower",
         "answers": ["Paris"], "positive_ctxs": [ctx("21", "Eiffel", "It is in Paris.")],
         "negative_ctxs": [], "hard_negative_ctxs": []},
        {"dataset": "nq_train_psgs_w100", "question": "no positive here", "answers": ["x"],
         "positive_ctxs": [], "negative_ctxs": [], "hard_negative_ctxs": [ctx("31", "T", "x")]},
    ]


@pytest.fixture
def eval_folders(tmp_path) -> dict:
    """One evaluation folder per benchmark kind, in the evaluation loaders' layouts."""
    beir = tmp_path / "eval" / "scifact"
    write_lines(beir / "corpus.jsonl", [json.dumps({"_id": "d1", "title": "T", "text": "doc one"})])
    write_lines(beir / "queries.jsonl", [json.dumps({"_id": "t1", "text": "  EN QUERY\t1001 "}),
                                        json.dumps({"_id": "t2", "text": "en query 1002"})])
    write_lines(beir / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "t1\td1\t1"])
    nq = tmp_path / "eval" / "nq"
    write_lines(nq / "psgs_w100.tsv", ["id\ttext\ttitle", "1\tParis is a city\tParis"])
    write_lines(nq / "nq-test.qa.csv", ["where is the eiffel tower\t['Paris']"])
    mir = tmp_path / "eval" / "miracl"
    topics = mir / "miracl-v1.0-sw"
    write_lines(topics / "topics" / "topics.miracl-v1.0-sw-dev.tsv", ["5\tLeaked MIRACL topic"])
    write_lines(topics / "qrels" / "qrels.miracl-v1.0-sw-dev.tsv", ["5\tQ0\t16#0\t1"])
    write_lines(mir / "miracl-corpus-v1.0-sw" / "docs-0.jsonl",
                [json.dumps({"docid": "16#0", "title": "T", "text": "jibu 3"})])
    lareqa = tmp_path / "eval" / "xquad-r"
    lareqa.mkdir(parents=True)
    context = "de passage 2011. Another sentence."
    (lareqa / "en.json").write_text(json.dumps({"data": [{"paragraphs": [{
        "context": context, "sentences": ["de passage 2011.", "Another sentence."],
        "sentence_breaks": [[0, 16], [17, len(context)]],
        "qas": [{"id": "x1", "question": "DE passage 2011",
                 "answers": [{"text": "de", "answer_start": 0}]}]}]}]}))
    return {"beir": beir, "nq": nq, "miracl": mir, "lareqa": lareqa}
