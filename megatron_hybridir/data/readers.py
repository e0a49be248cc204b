"""Readers for parallel multilingual QA records: JSONL, Parquet, or any ``datasets`` source.

Why it exists: training data come in several shapes (docs/design.md §7.1); real corpora are dirty.
Readers stream records (memory does not grow with the corpus), normalise them to
:class:`ParallelItem`, and either stop with a message that names the file, line and field
(``on_error="raise"``, the default) or skip the record and count why (``on_error="skip"``). The
:class:`ReadReport` is printed at the end of reading, so nothing is dropped silently.

What it does not do: tokenize (``preprocess.py``) or sample (``sampler.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

_LANG_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class DataError(ValueError):
    """A record or a data configuration is wrong; the message says where, ``reason`` says why."""

    def __init__(self, message: str, reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass
class ParallelItem:
    id: str
    query: dict[str, str]
    positive: dict[str, str]
    negatives: list[dict[str, str]] = field(default_factory=list)

    @property
    def languages(self) -> list[str]:
        """Languages with both a query and a positive."""
        return sorted(set(self.query) & set(self.positive))


@dataclass
class ReadReport:
    source: str
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_location: dict = field(default_factory=dict)
    languages: Counter = field(default_factory=Counter)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first_location.setdefault(reason, where)

    def summary(self) -> str:
        lines = [f"{self.source}: read {self.read} records, kept {self.kept}"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {count} ({reason}; first at {self.first_location[reason]})")
        langs = ", ".join(f"{k}={v}" for k, v in sorted(self.languages.items()))
        lines.append(f"  pairs per language: {langs}")
        return "\n".join(lines)


def validate_languages(languages: Iterable[str]) -> list[str]:
    """Reject malformed codes early (``data.languages``)."""
    langs = list(languages)
    bad = [code for code in langs if not _LANG_CODE.match(code)]
    if bad:
        raise DataError(f"data.languages: unknown language code(s) {bad}; expected ISO 639 codes "
                        f"such as 'en', 'de', 'zh' (optionally with a region, 'pt-BR')")
    if len(set(langs)) != len(langs):
        raise DataError(f"data.languages: duplicate codes in {langs}")
    return langs


def _texts(value, where: str, name: str, languages: set[str], report: ReadReport,
           lang: Optional[str]) -> dict[str, str]:
    """A {lang: text} dict from a parallel field or a monolingual string field."""
    if lang is not None:
        value = {lang: value}
    if not isinstance(value, dict):
        raise DataError(f"{where}: field '{name}' must map language codes to text, got "
                        f"{type(value).__name__}", reason=f"malformed field '{name}'")
    out = {}
    for code, text in value.items():
        if text is None:  # columnar formats (Parquet structs) store an absent language as null
            continue
        if code not in languages:
            report.skip(f"language '{code}' not in data.languages", where)
            continue
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field '{name}.{code}' is empty", reason="empty text")
        out[code] = text
    return out


def parse_record(record: dict, *, where: str, languages: set[str], report: ReadReport,
                 min_languages: int = 1) -> ParallelItem:
    """Normalise one parallel or monolingual record (raises DataError naming ``where``)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}",
                        reason="not an object")
    lang = record.get("lang")
    for name in ("query", "positive"):
        if record.get(name) in (None, "", {}):
            raise DataError(f"{where}: missing field '{name}'", reason=f"missing '{name}'")
    query = _texts(record["query"], where, "query", languages, report, lang)
    positive = _texts(record["positive"], where, "positive", languages, report, lang)
    negatives = []
    for j, neg in enumerate(record.get("negatives") or []):
        negatives.append(_texts(neg, where, f"negatives[{j}]", languages, report, lang))
    item = ParallelItem(id=str(record.get("id", where)), query=query, positive=positive,
                        negatives=negatives)
    if len(item.languages) < min_languages:
        raise DataError(f"{where}: item has {len(item.languages)} language(s) with both query "
                        f"and positive ({item.languages}); cross-lingual batches need at least "
                        f"{min_languages}", reason=f"fewer than {min_languages} languages")
    return item


def _jsonl_records(path: Path) -> Iterator[tuple[str, object]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                yield where, DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})",
                                       reason="malformed JSON")


def _datasets_records(source: str, split: str) -> Iterator[tuple[str, object]]:
    from datasets import load_dataset

    path = Path(source)
    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.glob("*.parquet"))
        dataset = load_dataset("parquet", data_files=files, split=split, streaming=True)
    else:
        dataset = load_dataset(source, split=split, streaming=True)
    for index, record in enumerate(dataset):
        yield f"{source}[{index}]", record


def read_items(source: str, *, languages: Iterable[str], min_languages: int = 1,
               on_error: str = "raise", split: str = "train",
               report: Optional[ReadReport] = None) -> Iterator[ParallelItem]:
    """Stream normalised items from a JSONL file, a Parquet file/folder or a ``datasets`` name.

    ``report`` (created if None) accumulates counts; print ``report.summary()`` afterwards.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"data.on_error: expected raise or skip, got {on_error!r}")
    langs = set(validate_languages(languages))
    report = report if report is not None else ReadReport(source)
    path = Path(source)
    if path.suffix in (".jsonl", ".json"):
        if not path.exists():
            raise DataError(f"{source}: file not found")
        records = _jsonl_records(path)
    else:
        records = _datasets_records(source, split)
    for where, record in records:
        report.read += 1
        try:
            if isinstance(record, DataError):
                raise record
            item = parse_record(record, where=where, languages=langs, report=report,
                                min_languages=min_languages)
        except DataError as err:
            if on_error == "raise":
                raise
            report.skip(err.reason, where)
            continue
        report.kept += 1
        report.languages.update(item.languages)
        yield item


def check_language_coverage(languages: Iterable[str], reports: Iterable[ReadReport]) -> None:
    """Every configured language must have pairs in at least one source."""
    seen: Counter = Counter()
    for report in reports:
        seen.update(report.languages)
    missing = [lang for lang in languages if not seen[lang]]
    if missing:
        raise DataError(f"data.languages: {missing} have no query/positive pairs in any source")

