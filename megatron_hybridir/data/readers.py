"""Readers for parallel multilingual QA records: JSONL, Parquet, or any ``datasets`` source.

Why it exists: training data come in several shapes (docs/design.md §7.1); real corpora are dirty.
Readers stream records (memory does not grow with the corpus), normalise them to
:class:`ParallelItem`, and either stop with a message that names the file, line and field
(``on_error="raise"``, the default) or skip the record and count why (``on_error="skip"``). The
:class:`ReadReport` is printed at the end of reading, so nothing is dropped silently.

What it does not do: tokenize (``preprocess.py``) or sample (``sampler.py``).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from tqdm import tqdm

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
    teacher_scores: Optional[dict[str, list[float]]] = None
    """Per language of ``languages``: the teacher's scores of the positive and of the item's
    negatives that have a text in that language, in record order (distillation); None: none."""

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
    dropped: Counter = field(default_factory=Counter)
    """Kept records that lost texts (languages not in data.languages), counted once per record, so
    ``read == kept + sum(skipped.values())`` always holds."""

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first_location.setdefault(reason, where)

    def drop(self, reason: str, where: str, seen: set) -> None:
        """Count ``reason`` once for the record being parsed (``seen`` collects its reasons)."""
        if reason not in seen:
            seen.add(reason)
            self.dropped[reason] += 1
            self.first_location.setdefault(reason, where)

    def summary(self) -> str:
        lines = [f"{self.source}: read {self.read} records, kept {self.kept}"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {count} ({reason}; first at {self.first_location[reason]})")
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  {count} kept record(s) lost texts ({reason}; first at "
                         f"{self.first_location[reason]})")
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


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong_type(where: str, name: str, value, expected: str) -> DataError:
    return DataError(f"{where}: field '{name}' must be {expected}, got {type(value).__name__} "
                     f"{_show(value)}", reason=f"wrong type in '{name.split('[')[0].split('.')[0]}'")


def _texts(value, where: str, name: str, languages: set[str], report: ReadReport,
           lang: Optional[str], seen: set) -> dict[str, str]:
    """A {lang: text} dict from a parallel field or a monolingual string field."""
    if lang is not None:
        if not isinstance(value, str):
            raise _wrong_type(where, name, value, f"a string (monolingual record, lang={lang!r})")
        value = {lang: value}
    if not isinstance(value, dict):
        raise DataError(f"{where}: field '{name}' must map language codes to text, got "
                        f"{type(value).__name__} {_show(value)}",
                        reason=f"malformed field '{name.split('[')[0]}'")
    out = {}
    for code, text in value.items():
        if text is None:  # columnar formats (Parquet structs) store an absent language as null
            continue
        if not isinstance(text, str):
            raise _wrong_type(where, f"{name}.{code}", text, "a string")
        if code not in languages:
            report.drop(f"language '{code}' not in data.languages", where, seen)
            continue
        if not text.strip():
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
    if lang is not None and not isinstance(lang, str):
        raise _wrong_type(where, "lang", lang, "a language code string")
    record_id = record.get("id")
    if record_id is None:   # absent, or null in a columnar format: the record's place is its id
        record_id = where
    # bool is an int subclass, but True is no identifier.
    if not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
        raise _wrong_type(where, "id", record_id, "a string or an integer")
    for name in ("query", "positive"):
        if record.get(name) in (None, "", {}):
            raise DataError(f"{where}: missing field '{name}'", reason=f"missing '{name}'")
    seen: set = set()   # reasons this record already counted in report.dropped
    query = _texts(record["query"], where, "query", languages, report, lang, seen)
    positive = _texts(record["positive"], where, "positive", languages, report, lang, seen)
    raw_negatives = record.get("negatives")
    if raw_negatives is None:
        raw_negatives = []
    # A string is iterable: unchecked, it would become one hard negative per character.
    if not isinstance(raw_negatives, list):
        raise _wrong_type(where, "negatives", raw_negatives,
                          "a list of " + ("strings" if lang else "{language: text} objects"))
    negatives = [_texts(neg, where, f"negatives[{j}]", languages, report, lang, seen)
                 for j, neg in enumerate(raw_negatives)]
    item = ParallelItem(id=str(record_id), query=query, positive=positive,
                        negatives=[neg for neg in negatives if neg])
    if len(item.languages) < min_languages:
        raise DataError(f"{where}: item has {len(item.languages)} language(s) with both query "
                        f"and positive ({item.languages}); cross-lingual batches need at least "
                        f"{min_languages}", reason=f"fewer than {min_languages} languages")
    if record.get("teacher_scores") is not None:
        item.teacher_scores = _teacher_scores(record["teacher_scores"], item, where=where,
                                              lang=lang, languages=languages)
    return item


def _teacher_scores(value, item: ParallelItem, *, where: str, lang: Optional[str],
                    languages: set[str]) -> dict[str, list[float]]:
    """``teacher_scores`` ({lang: [positive, negatives...]}, or one list in a monolingual record)
    checked against the item: every language of the item, 1 + its negatives in that language, all
    finite numbers. Languages outside ``data.languages`` are dropped with their texts."""
    if lang is not None:
        if not isinstance(value, list):
            raise _wrong_type(where, "teacher_scores", value,
                              f"a list of numbers (monolingual record, lang={lang!r})")
        value = {lang: value}
    if not isinstance(value, dict):
        raise _wrong_type(where, "teacher_scores", value, "an object {language: [numbers]}")
    value = {code: v for code, v in value.items() if code in languages and v is not None}
    missing = [code for code in item.languages if code not in value]
    extra = [code for code in value if code not in item.languages]
    if missing or extra:
        raise DataError(f"{where}: field 'teacher_scores' must have exactly the item's languages "
                        f"{item.languages}, got {sorted(value)}", reason="teacher_scores languages")
    out = {}
    for code in item.languages:
        scores, name = value[code], f"teacher_scores.{code}" if lang is None else "teacher_scores"
        expected = 1 + sum(code in neg for neg in item.negatives)
        if not isinstance(scores, list) or len(scores) != expected:
            raise DataError(f"{where}: field '{name}' must list {expected} scores (the positive and "
                            f"{expected - 1} negative(s) in {code}), got {_show(scores)}",
                            reason="teacher_scores count")
        for j, x in enumerate(scores):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise DataError(f"{where}: field '{name}[{j}]' must be a finite number, got "
                                f"{_show(x)}", reason="teacher_scores value")
        out[code] = [float(x) for x in scores]
    return out


def jsonl_records(path: str | Path, *, progress: bool = False) -> Iterator[tuple[str, object]]:
    """(location, object or DataError) per non-blank line of a .jsonl or .jsonl.gz file: the one
    JSONL reader of training records and of the data sources (``data/sources/rows.py``)."""
    # Bytes, decoded per line: a bad byte is then one bad record with its line number, not a bare
    # UnicodeDecodeError from the file iterator that no skip mode can step over.
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        lines = tqdm(handle, desc=path.name, unit=" lines", leave=False, disable=not progress)
        for number, raw in enumerate(lines, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield where, DataError(f"{where}: not valid UTF-8 (byte {raw[err.start]:#04x} at "
                                       f"column {err.start + 1}); re-encode the file as UTF-8",
                                       reason="not UTF-8")
                continue
            if not line.strip():
                continue
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


def raw_records(source: str, split: str = "train") -> Iterator[tuple[str, object]]:
    """(location, record or DataError) from a JSONL file, a Parquet file/folder or a ``datasets``
    name: what ``read_items`` parses, and what the miner rewrites record by record."""
    path = Path(source)
    if path.suffix in (".jsonl", ".json"):
        if not path.exists():
            raise DataError(f"{source}: file not found")
        return jsonl_records(path)
    return _datasets_records(source, split)


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
    for where, record in raw_records(source, split):
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

