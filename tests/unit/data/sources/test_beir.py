"""A BEIR folder with qrels/train.tsv -> monolingual records, from files or ``datasets`` tables."""

from __future__ import annotations

import json
import re

import pytest

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.beir import dataset_source
from megatron_hybridir.data.sources.build import build_beir
from tests.unit.data.sources.conftest import write_lines

CORPUS = [{"_id": "d1", "title": "One", "text": "first doc"}, {"_id": "d2", "title": "", "text": "second"},
          {"_id": 3, "title": "Three", "text": "third doc"}, {"_id": "d1", "title": "X", "text": "dup"}]
QUERIES = [{"_id": "q1", "text": "query one"}, {"_id": "q2", "text": "query two"},
           {"_id": "q3", "text": "query three"}]
QRELS = [("q1", "d1", 1), ("q1", "d2", 1), ("q2", "d2", 0), ("q3", "3", 2), ("q3", "3", 2),
         ("q9", "d1", 1), ("q2", "d9", 1)]
EXPECTED = [
    {"id": "toy-q1", "lang": "en", "query": "query one", "positive": "One first doc", "negatives": []},
    {"id": "toy-q3", "lang": "en", "query": "query three", "positive": "Three third doc",
     "negatives": []},
]


@pytest.fixture
def beir_folder(tmp_path):
    folder = tmp_path / "toy"
    write_lines(folder / "corpus.jsonl", (json.dumps(r) for r in CORPUS))
    write_lines(folder / "queries.jsonl", (json.dumps(r) for r in QUERIES))
    write_lines(folder / "qrels" / "train.tsv",
                ["query-id\tcorpus-id\tscore", *("\t".join(map(str, r)) for r in QRELS)])
    return folder


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_counts_and_rules(beir_folder, tmp_path):
    out = tmp_path / "b.jsonl"
    report = build_beir(folder=str(beir_folder), output=str(out), quiet=True)
    assert _records(out) == EXPECTED
    assert (report.candidates, report.kept) == (4, 2)
    assert report.dropped == {"query id not in queries.jsonl or empty": 1,        # q9
                              "positive corpus-id not in corpus.jsonl or empty": 1}  # q2 -> d9
    assert report.skipped["judgement with score <= 0 (not a positive)"] == 1
    assert report.skipped["repeated (query, document) judgement"] == 1
    assert report.skipped["duplicate document id, kept first"] == 1
    assert report.first_location["duplicate document id, kept first"] == \
        f"{beir_folder / 'corpus.jsonl'}:4"
    assert report.trimmed == {"extra positives (one item per query: the first)": 1}


def test_datasets_tables_give_the_same_records(beir_folder, tmp_path):
    from datasets import Dataset

    corpus = Dataset.from_list([{**r, "_id": str(r["_id"])} for r in CORPUS])
    queries = Dataset.from_list(QUERIES)
    qrels = Dataset.from_list([{"query-id": q, "corpus-id": d, "score": s} for q, d, s in QRELS])
    build_beir(source=dataset_source("toy", corpus=corpus, queries=queries, qrels=qrels),
               output=str(tmp_path / "ds.jsonl"), quiet=True)
    assert _records(tmp_path / "ds.jsonl") == EXPECTED


def test_malformed_inputs_are_named(beir_folder, tmp_path):
    qrels = beir_folder / "qrels" / "train.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\tgood\n")
    with pytest.raises(DataError, match=re.escape(
            f"{qrels}:2: field 'score' must be a number, got 'good'")):
        build_beir(folder=str(beir_folder), output=str(tmp_path / "o.jsonl"), quiet=True)
    qrels.write_text("q1\td1\t1\n")
    (beir_folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": 7}\n')
    with pytest.raises(DataError, match=re.escape(
            f"{beir_folder / 'corpus.jsonl'}:1: field 'text' must be a string, got int 7")):
        build_beir(folder=str(beir_folder), output=str(tmp_path / "o.jsonl"), quiet=True)
    (beir_folder / "corpus.jsonl").write_text('{"title": "T", "text": "x"}\n')
    with pytest.raises(DataError, match=re.escape(
            f"{beir_folder / 'corpus.jsonl'}:1: field '_id' must be a non-empty string or an "
            f"integer (document), got None")):
        build_beir(folder=str(beir_folder), output=str(tmp_path / "o.jsonl"), quiet=True)
    with pytest.raises(DataError, match="no qrels/dev.tsv"):
        build_beir(folder=str(beir_folder), split="dev", output=str(tmp_path / "o.jsonl"), quiet=True)
