"""A BEIR-format folder with training judgements -> monolingual records.

Why it exists: many public sets (BEIR's msmarco, nq-train, hotpotqa, fiqa, ...) ship training
judgements in BEIR's layout, with the texts in separate files keyed by id.

The layout relied on (BEIR's releases, as ``evaluation/loaders.load_beir`` reads them):
``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and
``qrels/train.tsv`` (``query-id<TAB>corpus-id<TAB>score`` with a header line). Through
``datasets``: ``BeIR/<name>`` configs ``corpus`` / ``queries`` and ``BeIR/<name>-qrels`` split
``train``, the same column names.

One item per judged query (qrels order; id ``<name>-<query-id>``): its first document with a
score > 0 as the positive (``title + " " + text``, as evaluation encodes it). BEIR has no hard
negatives, so the records have none (``tools/mine_hard_negatives.py`` adds them). Memory: the
judgements plus one int64 per referenced id (``tables.index_ids``); the corpus is never loaded.

What it does not do: read BEIR's test split for evaluation (``evaluation/loaders.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.tables import (
    DatasetTable, JsonlTable, scan_lines, decode, index_ids, show,
)


def _qrels_rows(path: Path) -> Iterator[tuple[str, tuple]]:
    for lineno, _, raw in scan_lines(path, path.name):
        where = f"{path}:{lineno}"
        line = decode(raw, where).rstrip("\r\n")
        parts = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or (lineno == 1 and parts[-1] == "score"):
            continue
        if len(parts) != 3:
            yield where, DataError(f"{where}: expected 3 columns (query-id corpus-id score), found "
                                   f"{len(parts)} in {show(line)}", reason="malformed qrels line")
        else:
            yield where, tuple(parts)


def read_qrels(rows, report: BuildReport, on_error: str = "raise") -> dict[str, list[str]]:
    """{query id: [positive doc ids]} in first-seen order from ``(where, (qid, did, score))``."""
    positives: dict[str, list[str]] = {}
    for where, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            qid, did, score = (str(v) for v in row)
            try:
                grade = float(score)
            except ValueError:
                raise DataError(f"{where}: field 'score' must be a number, got {score!r}",
                                reason="malformed qrels line") from None
        except DataError as err:
            if on_error == "raise":
                raise
            report.skip(err.reason, where)
            continue
        if grade <= 0:
            report.skip("judgement with score <= 0 (not a positive)", where)
            continue
        docs = positives.setdefault(qid, [])
        if did in docs:
            report.skip("repeated (query, document) judgement", where)
        else:
            docs.append(did)
    return positives


def folder_source(folder: str | Path, split: str = "train") -> dict:
    folder = Path(folder)
    qrels = folder / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        raise DataError(f"{folder}: no qrels/{split}.tsv (a BEIR folder with training judgements)")
    return {"name": folder.name, "qrels": _qrels_rows(qrels),
            "queries": JsonlTable(folder / "queries.jsonl", "query"),
            "corpus": JsonlTable(folder / "corpus.jsonl", "document", title_field="title")}


def dataset_source(name: str, *, corpus, queries, qrels) -> dict:
    """``datasets`` tables with BEIR's columns (corpus ``_id``/``title``/``text``, queries
    ``_id``/``text``, qrels ``query-id``/``corpus-id``/``score``)."""
    rows = ((f"{name}-qrels[{i}]", (r["query-id"], r["corpus-id"], r["score"]))
            for i, r in enumerate(qrels))
    return {"name": name, "qrels": rows,
            "queries": DatasetTable(queries, "query", name=f"{name} queries", id_field="_id"),
            "corpus": DatasetTable(corpus, "document", name=f"{name} corpus", id_field="_id",
                                   title_field="title")}


def hub_source(name: str, split: str = "train") -> dict:
    """``BeIR/<name>`` from the hub (downloads; never called by the tests)."""
    from datasets import load_dataset

    return dataset_source(name, corpus=load_dataset(f"BeIR/{name}", "corpus", split="corpus"),
                          queries=load_dataset(f"BeIR/{name}", "queries", split="queries"),
                          qrels=load_dataset(f"BeIR/{name}-qrels", split=split))


def beir_records(source: dict, report: BuildReport, *, lang: str = "en",
                 on_error: str = "raise") -> Iterator[tuple[str, dict]]:
    positives = read_qrels(source["qrels"], report, on_error)
    qslots = {qid: n for n, qid in enumerate(positives)}
    dslots: dict[str, int] = {}
    for docs in positives.values():
        dslots.setdefault(docs[0], len(dslots))
    with source["queries"] as queries, source["corpus"] as corpus:
        qhandles = index_ids(queries, qslots, report, on_error=on_error)
        dhandles = index_ids(corpus, dslots, report, on_error=on_error)
        for qid, docs in positives.items():
            report.candidates += 1
            where = f"{source['name']} query-id {qid}"
            query = _text(queries, qhandles[qslots[qid]])
            positive = _text(corpus, dhandles[dslots[docs[0]]])
            if not query or not positive:
                report.drop("query id not in queries.jsonl or empty" if not query else
                            "positive corpus-id not in corpus.jsonl or empty", where)
                continue
            if len(docs) > 1:
                report.trim("extra positives (one item per query: the first)", where, len(docs) - 1)
            yield where, {"id": f"{source['name']}-{qid}", "lang": lang, "query": query,
                          "positive": positive, "negatives": []}


def _text(table, handle) -> Optional[str]:
    if handle < 0:
        return None
    text, _ = table.text_at(int(handle))
    return text if text.strip() else None
