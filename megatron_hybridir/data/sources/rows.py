"""Rows of record-per-item sources (MIRACL JSONL, a ``datasets`` table) and their field checks.

Why it exists: MIRACL's training files and the ``datasets`` copies of MIRACL / DPR carry one item
per row; this module streams those rows with their location (``file:line`` or ``name[row]``) and
checks fields so that every message names the file, line, field, value and what was expected.

What it does not do: turn rows into training records (``miracl.py``, ``dpr.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from megatron_hybridir.data.readers import DataError, jsonl_records
from megatron_hybridir.data.sources.tables import passage_text, show


def jsonl_rows(path: str | Path) -> Iterator[tuple[str, object]]:
    """(location, object or DataError) per non-blank line of a .jsonl or .jsonl.gz file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    yield from jsonl_records(path, progress=True)


def dataset_rows(dataset, name: str) -> Iterator[tuple[str, object]]:
    """(``name[row]``, row) over a ``datasets.Dataset`` or ``IterableDataset``."""
    for index, row in enumerate(tqdm(dataset, desc=name, unit=" rows", leave=False)):
        yield f"{name}[{index}]", row


def need(record: dict, key: str, where: str, types: tuple, expected: str, *,
         source: str, prefix: str = ""):
    """``record[key]`` if it has one of ``types`` (bool never counts as int), else a DataError."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: {prefix or 'record'} must be a JSON object, got "
                        f"{type(record).__name__} {show(record)}", reason="not an object")
    if key not in record or record[key] is None:
        raise DataError(f"{where}: missing field '{prefix}{key}' ({source}: expected {expected})",
                        reason=f"missing '{key}'")
    value = record[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataError(f"{where}: field '{prefix}{key}' must be {expected}, got "
                        f"{type(value).__name__} {show(value)}", reason=f"wrong type in '{key}'")
    return value


def passages(record: dict, key: str, where: str, *, source: str, id_keys: tuple[str, ...],
             required: bool) -> list[tuple[Optional[str], str]]:
    """(passage id or None, title + text) of each passage object in the list ``record[key]``."""
    if not required and record.get(key) is None:
        return []
    items = need(record, key, where, (list,), "a list of passage objects", source=source)
    out = []
    for j, ctx in enumerate(items):
        prefix = f"{key}[{j}]."
        text = need(ctx, "text", where, (str,), "a string", source=source, prefix=prefix)
        title = ctx.get("title")
        if title is not None and not isinstance(title, str):
            raise DataError(f"{where}: field '{prefix}title' must be a string, got "
                            f"{type(title).__name__} {show(title)}", reason="wrong type in 'title'")
        pid = next((ctx[k] for k in id_keys if ctx.get(k) is not None), None)
        out.append((None if pid is None else str(pid), passage_text(title, text) if text.strip()
                    else ""))
    return out


def mono_record(*, item_id: str, lang: str, query: str, positives: list, negatives: list,
                max_negatives: Optional[int], report, where: str) -> Optional[dict]:
    """A monolingual record (readers' shape) from one row's parts, or None (dropped, counted).

    One item per query: the first non-empty positive; the others are counted, not written as
    separate items (two items with one query would be false negatives of each other in a batch).
    Negatives: in order, without empty texts, repeats and the query's own positives (by passage id
    or by text), at most ``max_negatives``."""
    report.candidates += 1
    if not query.strip():
        report.drop("empty query", where)
        return None
    good = [(pid, text) for pid, text in positives if text]
    if len(good) < len(positives):
        report.trim("empty positive passage", where, len(positives) - len(good))
    if not good:
        report.drop("no positive passage", where)
        return None
    if len(good) > 1:
        report.trim("extra positives (one item per query: the first)", where, len(good) - 1)
    positive_ids = {pid for pid, _ in positives if pid is not None}
    positive_texts = {text for _, text in good}
    kept: list[str] = []
    for pid, text in negatives:
        if not text:
            report.trim("empty negative passage", where)
        elif (pid is not None and pid in positive_ids) or text in positive_texts:
            report.trim("negative is a positive of the same query", where)
        elif text in kept:
            report.trim("repeated negative", where)
        elif max_negatives is not None and len(kept) >= max_negatives:
            report.trim(f"negative beyond max_negatives={max_negatives}", where)
        else:
            kept.append(text)
    return {"id": item_id, "lang": lang, "query": query, "positive": good[0][1],
            "negatives": kept}


def build_rows(rows, make, report, on_error: str) -> Iterator[tuple[str, dict]]:
    """``make(where, row)`` over rows; a malformed row raises, or with ``on_error="skip"`` counts
    as a dropped candidate under its reason."""
    for where, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            record = make(where, row)
        except DataError as err:
            if on_error == "raise":
                raise
            report.candidates += 1
            report.drop(err.reason, where)
            continue
        if record is not None:
            yield where, record
