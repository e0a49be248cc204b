"""Leakage check: no training text may equal an evaluation query of a configured benchmark.

Why it exists: public training sets overlap public test sets (MS MARCO dev queries reappear in
translated training files, NQ questions in DPR dumps, MIRACL topics in mixtures). A model trained
on a test query reports numbers that mean nothing. Every query, positive and negative text of every
training item is compared, after normalisation (Unicode NFKC, case-folded, whitespace runs
collapsed, trimmed), with the queries of each benchmark given.

Action (``on_leak``): ``"drop"`` (the default) leaves the item out — the whole item, every language
of it, since its other languages are translations of the leaked text — and counts it per
benchmark; ``"fail"`` stops at the first leaked item, naming the file, the field and the
benchmark. The report records, per benchmark, how many evaluation queries were checked and how many
items and texts matched.

The evaluation queries are read here, in the formats of ``evaluation/loaders.py`` (data/ sits below
evaluation/ and may not import it), and only the queries, never the corpora:

- ``beir``: ``queries.jsonl`` restricted to the queries judged in ``qrels/<split>.tsv`` (default
  ``test``), as the evaluation drops unjudged ones — a BEIR folder's ``queries.jsonl`` often holds
  the training queries too;
- ``nq``: the questions of ``nq-test.qa.csv`` (``question<TAB>[answers]``);
- ``miracl``: ``miracl-v1.0-<lang>/topics/topics.miracl-v1.0-<lang>-<split>.tsv`` (default ``dev``)
  for every language folder found (all topics: a superset of the judged ones evaluation scores);
- ``lareqa`` (also ``xquad-r``, ``mlqa-r``): the questions of every ``<lang>.json``.

Each reader is cross-checked against the evaluation loader in the tests.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.data import text_files
from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.tables import decode, show

csv.field_size_limit(1 << 30)
BENCHMARK_KINDS = ("beir", "nq", "miracl", "lareqa", "xquad-r", "mlqa-r")
ON_LEAK = ("drop", "fail")


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _find(folder: Path, name: str) -> Path:
    return text_files.find(folder, name, error=DataError)


def _lines(path: Path) -> Iterator[tuple[int, str, str]]:
    for lineno, line in text_files.numbered_lines(path, error=DataError):
        yield lineno, f"{path}:{lineno}", line


def beir_queries(folder: str | Path, split: str = "test") -> Iterator[str]:
    folder = Path(folder)
    judged = set()
    for lineno, where, line in _lines(_find(folder / "qrels", f"{split}.tsv")):
        parts = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if not line.strip() or (lineno == 1 and parts[-1] == "score"):
            continue
        if len(parts) != 3:
            raise DataError(f"{where}: expected 3 columns (query-id corpus-id score), found "
                            f"{len(parts)}")
        judged.add(parts[0])
    for _, where, line in _lines(_find(folder, "queries.jsonl")):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{where}: expected an object with a string field 'text', got "
                            f"{show(record)}")
        if str(record.get("_id")) in judged:
            yield record["text"]


def nq_queries(folder: str | Path, qa_file: str = "nq-test.qa.csv") -> Iterator[str]:
    path = _find(Path(folder), qa_file)
    reader = csv.reader((line for _, _, line in _lines(path)), delimiter="\t")
    for row in reader:
        if len(row) != 2:
            raise DataError(f"{path}:{reader.line_num}: expected 'question<TAB>[answers]', found "
                            f"{len(row)} column(s)")
        yield row[0]


def miracl_queries(root: str | Path, split: str = "dev") -> Iterator[str]:
    root = Path(root)
    folders = sorted(root.glob("miracl-v1.0-*"))
    if not folders:
        raise DataError(f"{root}: no miracl-v1.0-<lang> folders")
    for folder in folders:
        lang = folder.name.removeprefix("miracl-v1.0-")
        for _, where, line in _lines(_find(folder / "topics",
                                        f"topics.miracl-v1.0-{lang}-{split}.tsv")):
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2:
                raise DataError(f"{where}: expected 'qid<TAB>query', found {len(parts)} column(s)")
            yield parts[1]


def lareqa_queries(folder: str | Path) -> Iterator[str]:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise DataError(f"{folder}: no <lang>.json files (LAReQA layout)")
    for path in files:
        try:
            data = json.loads(decode(path.read_bytes(), str(path)))["data"]
            for article in data:
                for para in article.get("paragraphs", []):
                    for qa in para.get("qas", []):
                        yield qa["question"]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise DataError(f"{path}: not a SQuAD-style JSON with data/paragraphs/qas/question "
                            f"({type(err).__name__}: {err})") from None


def read_eval_queries(kind: str, path: str | Path, split: Optional[str] = None) -> list[str]:
    """The query texts of one benchmark, as evaluation reads them."""
    if kind == "beir":
        return list(beir_queries(path, split or "test"))
    if kind == "nq":
        return list(nq_queries(path, split or "nq-test.qa.csv"))
    if kind == "miracl":
        return list(miracl_queries(path, split or "dev"))
    if kind in ("lareqa", "xquad-r", "mlqa-r"):
        if split:
            raise DataError(f"leak check {kind} {path}: LAReQA folders have no splits; got {split!r}")
        return list(lareqa_queries(path))
    raise DataError(f"leak check: unknown benchmark kind {kind!r}; expected one of "
                    f"{list(BENCHMARK_KINDS)}")


class LeakFilter:
    """Normalised evaluation queries -> the benchmarks they come from."""

    def __init__(self, benchmarks: dict[str, list[str]], on_leak: str = "drop"):
        if on_leak not in ON_LEAK:
            raise DataError(f"on_leak: expected one of {list(ON_LEAK)}, got {on_leak!r}")
        self.on_leak, self.sizes = on_leak, {}
        self.index: dict[str, tuple[str, ...]] = {}
        for name, queries in benchmarks.items():
            norms = {normalise(q) for q in queries} - {""}
            self.sizes[name] = len(norms)
            for text in norms:
                self.index[text] = self.index.get(text, ()) + (name,)

    @classmethod
    def from_specs(cls, specs: list[tuple[str, str, Optional[str]]], on_leak: str = "drop"):
        """(kind, path, split or None) per benchmark; named ``kind:folder-name[:split]``."""
        named = {}
        for kind, path, split in specs:
            name = f"{kind}:{Path(path).name}" + (f":{split}" if split else "")
            if name in named:   # two folders of one name: their counts would merge unseen
                raise DataError(f"leak check {kind} {path}: a benchmark named {name!r} is already "
                                f"checked; give each evaluation folder once (or rename one)")
            named[name] = read_eval_queries(kind, path, split)
        return cls(named, on_leak)

    def start(self, report: BuildReport) -> None:
        report.settings["on_leak"] = self.on_leak
        for name, size in self.sizes.items():
            report.leakage[name] = {"queries": size, "items": 0,
                                    "texts": {"query": 0, "positive": 0, "negative": 0}}

    def leaked(self, record: dict, where: str, report: BuildReport) -> bool:
        """Count this record's matches; True if it must be left out (raises with ``fail``)."""
        hits: Counter = Counter()
        for fieldname, text in _texts(record):
            for name in self.index.get(normalise(text), ()):
                hits[(name, fieldname)] += 1
                if self.on_leak == "fail":
                    raise DataError(f"{where}: {fieldname} text {show(text)} equals a query of "
                                    f"{name} (after case/whitespace normalisation); training on "
                                    f"it would leak the test set (on_leak=fail; use drop to "
                                    f"leave such items out)", reason="leaked")
        for (name, fieldname), count in hits.items():
            report.leakage[name]["texts"][fieldname] += count
        for name in {name for name, _ in hits}:
            report.leakage[name]["items"] += 1
        if hits:
            report.drop(f"leaked: equals an evaluation query of {sorted({n for n, _ in hits})[0]}",
                        where)
        return bool(hits)


def _texts(record: dict) -> Iterator[tuple[str, str]]:
    """(field, text) of a record in either readers' shape (monolingual strings or {lang: text})."""
    for fieldname in ("query", "positive"):
        value = record[fieldname]
        yield from ((fieldname, t) for t in (value.values() if isinstance(value, dict) else [value]))
    for negative in record.get("negatives") or []:
        values = negative.values() if isinstance(negative, dict) else [negative]
        yield from (("negative", t) for t in values)
