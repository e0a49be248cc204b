"""Raw training records in, the same records with mined ``negatives`` out.

Why it exists: the miner must write what it read — a parallel record stays parallel
(``{"id", "query": {lang: ...}, "positive": {...}, "negatives": [{lang: ...}, ...]}``), a monolingual
one stays monolingual (``{"id", "lang", "query", "positive", "negatives": [...]}``), JSONL stays
JSONL with its other fields untouched. Records are validated with the training reader's own
``parse_record`` (same errors, same file:line locations) and streamed, never held in memory.

What it does not do: tokenization or mining.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.data.readers import (DataError, ParallelItem, ReadReport, parse_record,
                                            raw_records)


def parsed_records(source: str, languages: list[str], *, split: str = "train",
                   report: Optional[ReadReport] = None
                   ) -> Iterator[tuple[dict, ParallelItem]]:
    """(raw record, validated item) pairs; a bad record stops with the reader's message."""
    report = report if report is not None else ReadReport(source)
    langs = set(languages)
    for where, record in raw_records(source, split):
        if isinstance(record, DataError):
            raise record
        report.read += 1
        item = parse_record(record, where=where, languages=langs, report=report)
        report.kept += 1
        report.languages.update(item.languages)
        yield record, item


def with_negatives(record: dict, item: ParallelItem, mined: dict[str, list[str]],
                   teacher_scores: Optional[dict[str, list[float]]] = None) -> dict:
    """``record`` with ``negatives`` replaced by the mined texts (``mined[lang]`` in rank order)
    and ``teacher_scores`` by the given ones ({lang: [positive, negatives...]}) or removed: scores
    of the input's negatives would be misaligned with the mined ones."""
    out = dict(record)
    out.pop("teacher_scores", None)
    if record.get("lang") is not None:                  # monolingual shape: a list of strings
        out["negatives"] = list(mined.get(str(record["lang"]), []))
        if teacher_scores is not None:
            out["teacher_scores"] = list(teacher_scores[str(record["lang"])])
        return out
    depth = max((len(v) for v in mined.values()), default=0)
    out["negatives"] = [{lang: texts[j] for lang, texts in mined.items() if j < len(texts)}
                        for j in range(depth)]
    if teacher_scores is not None:
        out["teacher_scores"] = {lang: list(v) for lang, v in teacher_scores.items()}
    return out


class RecordWriter:
    """Writes JSONL (records as they are) or Parquet (the standard fields, typed) to a temporary
    file renamed into place on ``close`` — an interrupted run never leaves a half output."""

    def __init__(self, path: str, languages: list[str], *, teacher_scores: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.parquet = self.path.suffix == ".parquet"
        if not self.parquet and self.path.suffix not in (".jsonl", ".json"):
            raise DataError(f"{path}: output must end in .jsonl or .parquet")
        self.languages = languages
        self.teacher_scores = teacher_scores
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict] = []
        self._writer = None
        self._shape: Optional[str] = None
        self._handle = None if self.parquet else self.tmp.open("w", encoding="utf-8")

    def write(self, record: dict) -> None:
        if not self.parquet:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        shape = "mono" if record.get("lang") is not None else "parallel"
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise DataError(f"{self.path}: Parquet output needs one record shape; got both "
                            f"parallel and monolingual records (write .jsonl instead)")
        keys = ("id", "lang", "query", "positive", "negatives") if shape == "mono" else \
            ("id", "query", "positive", "negatives")
        keys += ("teacher_scores",) if self.teacher_scores else ()
        self._rows.append({k: record.get(k) for k in keys} | {"id": str(record.get("id"))})
        if len(self._rows) >= 4096:
            self._flush()

    def _schema(self):
        import pyarrow as pa

        scores = pa.list_(pa.float64())
        if self._shape == "mono":
            return pa.schema([("id", pa.string()), ("lang", pa.string()), ("query", pa.string()),
                              ("positive", pa.string()), ("negatives", pa.list_(pa.string()))]
                             + ([("teacher_scores", scores)] if self.teacher_scores else []))
        texts = pa.struct([(lang, pa.string()) for lang in self.languages])
        return pa.schema([("id", pa.string()), ("query", texts), ("positive", texts),
                          ("negatives", pa.list_(texts))]
                         + ([("teacher_scores", pa.struct([(lang, scores) for lang in
                                                           self.languages]))]
                            if self.teacher_scores else []))

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        schema = self._schema()
        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self.tmp), schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=schema))
        self._rows = []

    def close(self) -> None:
        if self.parquet:
            self._flush()
            if self._writer is None:                  # no records: still a valid empty file
                self._shape = self._shape or "parallel"
                import pyarrow.parquet as pq
                pq.ParquetWriter(str(self.tmp), self._schema()).close()
            else:
                self._writer.close()
        else:
            self._handle.close()
        os.replace(self.tmp, self.path)
