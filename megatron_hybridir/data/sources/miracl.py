"""MIRACL's training split -> monolingual records, one language per file or ``datasets`` config.

Why it exists: MIRACL's training queries come with judged passages inline; turning them into our
records by hand is where titles get lost and duplicate queries slip in.

The fields relied on (Hugging Face ``miracl/miracl``, per-language configs, split ``train``; the
same names in its JSONL form): ``query_id`` (string), ``query`` (string), ``positive_passages``
and ``negative_passages``, lists of ``{"docid", "title", "text"}``. A passage becomes
``title + " " + text`` — what evaluation encodes (``RetrievalTask.passage``).

Per query one item (id ``miracl-<lang>-<query_id>``): the first positive, the negatives in order
without the positives (by docid or text), at most ``max_negatives``. A query without a positive is
dropped and counted. A repeated ``query_id`` keeps its first row; later ones are counted
(``skipped``). Rows are streamed; memory holds the query ids seen.

What it does not do: read MIRACL's evaluation topics (``evaluation/loaders.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.rows import (
    build_rows, dataset_rows, jsonl_rows, mono_record, need, passages,
)

FIELDS = "query_id, query, positive_passages, negative_passages"


def miracl_records(source, lang: str, report: BuildReport, *, max_negatives: Optional[int] = None,
                   on_error: str = "raise") -> Iterator[tuple[str, dict]]:
    """``source``: a .jsonl / .jsonl.gz path, or a ``datasets`` Dataset / IterableDataset."""
    rows = (jsonl_rows(source) if isinstance(source, (str, Path))
            else dataset_rows(source, f"miracl {lang}"))
    seen: set[str] = set()

    def make(where: str, row) -> Optional[dict]:
        qid = str(need(row, "query_id", where, (str, int), "a string id", source=f"MIRACL: {FIELDS}"))
        query = need(row, "query", where, (str,), "a string", source=f"MIRACL: {FIELDS}")
        pos = passages(row, "positive_passages", where, source=f"MIRACL: {FIELDS}",
                       id_keys=("docid",), required=True)
        neg = passages(row, "negative_passages", where, source=f"MIRACL: {FIELDS}",
                       id_keys=("docid",), required=False)
        if qid in seen:
            report.skip("duplicate MIRACL query_id, kept first", where)
            return None
        seen.add(qid)
        return mono_record(item_id=f"miracl-{lang}-{qid}", lang=lang, query=query, positives=pos,
                           negatives=neg, max_negatives=max_negatives, report=report, where=where)

    return build_rows(rows, make, report, on_error)


def hub_dataset(lang: str, name: str = "miracl/miracl", split: str = "train"):
    """MIRACL's training split of one language from the hub (downloads; never called by tests)."""
    from datasets import load_dataset

    return load_dataset(name, lang, split=split)
