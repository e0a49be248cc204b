"""Id -> text tables read by id, never by position, with memory bounded by the ids referenced.

Why it exists: public training sets name their passages and queries by id (mMARCO's triples, BEIR
qrels) and keep the texts in separate files of millions of lines. Loading a collection into a dict
costs tens of GiB; pairing files by line number is how translations end up misaligned. Here a
table is scanned once, and only the ids some training item references get a slot: their *handle*
(the byte offset of the line in a plain file, or the row of a ``datasets.Dataset``) goes into a
numpy array, and the text is read back by seeking when the item is written. Memory is one int64
per referenced id and language plus the id -> slot dict, whatever the collection's size.

Tables:
- :class:`TsvTable`: ``id<TAB>text`` lines (mMARCO's collections and queries). Split on the first
  tab only; lines are split on ``\\n`` only (bytes), so a text holding ``\\r``, ``\\x0b`` or
  U+2028 — which ``str.splitlines`` treats as line ends — stays one record.
- :class:`JsonlTable`: one JSON object per line (BEIR's ``corpus.jsonl`` / ``queries.jsonl``).
- :class:`DatasetTable`: a ``datasets.Dataset`` (memory-mapped Arrow; random access by row).

Duplicate ids are detected among referenced ids: the first occurrence is kept and each later one
is counted in the report (``skipped``) with its file and line. Gzipped files cannot be read by
offset and are refused with a message (decompress them first).

What it does not do: decide which ids are referenced (the source modules do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm import tqdm

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.report import BuildReport


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not valid UTF-8 (byte {raw[err.start]:#04x} at column "
                        f"{err.start + 1}); re-encode the file as UTF-8",
                        reason="not UTF-8") from None


def passage_text(title: Optional[str], text: str) -> str:
    """Title and body joined by a space: what evaluation encodes (``RetrievalTask.passage``), so a
    model trains on passages in the form it later retrieves them."""
    return f"{title or ''} {text}".strip()


def _plain(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".gz":
        raise DataError(f"{path}: gzipped; texts are read back by byte offset, which a gzip "
                        f"stream cannot seek to — decompress it first (gunzip -k)")
    return path


def scan_lines(path: Path, desc: str) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line) over a plain file, with a progress bar in bytes."""
    offset = 0
    with path.open("rb") as handle, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                         desc=desc, leave=False) as bar:
        for lineno, raw in enumerate(handle, 1):
            yield lineno, offset, raw
            offset += len(raw)
            if lineno % 4096 == 0:
                bar.update(offset - bar.n)
        bar.update(offset - bar.n)


class _FileTable:
    def __init__(self, path: str | Path, kind: str):
        self.path, self.kind = _plain(Path(path)), kind
        self._handle = None

    def _line_at(self, offset: int) -> bytes:
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(offset)
        return self._handle.readline()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TsvTable(_FileTable):
    """``id<TAB>text`` lines; ``kind`` names the table in messages and counts."""

    def _split(self, raw: bytes, where: str) -> tuple[str, str]:
        line = decode(raw, where).rstrip("\r\n")
        key, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{where}: expected 'id<TAB>text' ({self.kind}), found no tab in "
                            f"{show(line)}", reason=f"malformed {self.kind} line")
        if not key.strip():
            raise DataError(f"{where}: field 'id' is empty ({self.kind}); expected an id before "
                            f"the tab", reason=f"malformed {self.kind} line")
        return key, text

    def scan(self, report: BuildReport, on_error: str) -> Iterator[tuple[str, int, str]]:
        for lineno, offset, raw in scan_lines(self.path, self.path.name):
            if not raw.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                key, _ = self._split(raw, where)
            except DataError as err:
                if on_error == "raise":
                    raise
                report.skip(err.reason, where)
                continue
            yield key, offset, where

    def text_at(self, handle: int) -> tuple[str, str]:
        raw = self._line_at(handle)
        where = f"{self.path} (byte {handle})"
        return self._split(raw, where)[1], where


class JsonlTable(_FileTable):
    """One JSON object per line with an id field and a text field (and optionally a title)."""

    def __init__(self, path: str | Path, kind: str, *, id_field: str = "_id",
                 text_field: str = "text", title_field: Optional[str] = None):
        super().__init__(path, kind)
        self.id_field, self.text_field, self.title_field = id_field, text_field, title_field

    def _record(self, raw: bytes, where: str) -> dict:
        import json

        try:
            record = json.loads(decode(raw, where))
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})",
                            reason="malformed JSON") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}",
                            reason="not an object")
        key = record.get(self.id_field)
        if not isinstance(key, (str, int)) or isinstance(key, bool) or not str(key).strip():
            raise DataError(f"{where}: field '{self.id_field}' must be a non-empty string or an "
                            f"integer ({self.kind}), got {show(key)}",
                            reason=f"bad '{self.id_field}' in {self.kind}")
        return record

    def scan(self, report: BuildReport, on_error: str) -> Iterator[tuple[str, int, str]]:
        for lineno, offset, raw in scan_lines(self.path, self.path.name):
            if not raw.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                record = self._record(raw, where)
                # Checked here, where the line number is known (text_at knows only the offset).
                row_text(record, where, self.text_field, self.title_field)
            except DataError as err:
                if on_error == "raise":
                    raise
                report.skip(err.reason, where)
                continue
            yield str(record[self.id_field]), offset, where

    def text_at(self, handle: int) -> tuple[str, str]:
        where = f"{self.path} (byte {handle})"
        record = self._record(self._line_at(handle), where)
        return row_text(record, where, self.text_field, self.title_field), where


def row_text(record: dict, where: str, text_field: str, title_field: Optional[str]) -> str:
    """The text of a row (title + text when ``title_field``), type-checked."""
    text = record.get(text_field)
    if not isinstance(text, str):
        raise DataError(f"{where}: field '{text_field}' must be a string, got "
                        f"{type(text).__name__} {show(text)}", reason=f"bad '{text_field}'")
    if title_field is None:
        return text
    title = record.get(title_field)
    if title is not None and not isinstance(title, str):
        raise DataError(f"{where}: field '{title_field}' must be a string, got "
                        f"{type(title).__name__} {show(title)}", reason=f"bad '{title_field}'")
    return passage_text(title, text) if text.strip() else ""


class DatasetTable:
    """A ``datasets.Dataset`` with an id column; rows are read back by index."""

    def __init__(self, dataset, kind: str, *, name: str, id_field: str = "id",
                 text_field: str = "text", title_field: Optional[str] = None):
        missing = [f for f in (id_field, text_field) if f not in dataset.column_names]
        if missing:
            raise DataError(f"{name}: no column(s) {missing} ({kind}); found "
                            f"{dataset.column_names}")
        self.dataset, self.kind, self.name = dataset, kind, name
        self.id_field, self.text_field, self.title_field = id_field, text_field, title_field

    def scan(self, report: BuildReport, on_error: str) -> Iterator[tuple[str, int, str]]:
        ids = self.dataset.select_columns([self.id_field])
        row = 0
        for batch in tqdm(ids.iter(batch_size=8192), desc=self.name, leave=False,
                          total=-(-len(ids) // 8192)):
            for key in batch[self.id_field]:
                where = f"{self.name}[{row}]"
                if key is None or isinstance(key, bool) or not str(key).strip():
                    err = DataError(f"{where}: field '{self.id_field}' must be a non-empty id "
                                    f"({self.kind}), got {show(key)}",
                                    reason=f"bad '{self.id_field}' in {self.kind}")
                    if on_error == "raise":
                        raise err
                    report.skip(err.reason, where)
                else:
                    yield str(key), row, where
                row += 1

    def text_at(self, handle: int) -> tuple[str, str]:
        where = f"{self.name}[{handle}]"
        return row_text(self.dataset[int(handle)], where, self.text_field, self.title_field), where

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def index_ids(table, wanted: dict[str, int], report: BuildReport, *,
              on_error: str = "raise") -> np.ndarray:
    """[len(wanted)] int64 handle of each wanted id in ``table`` (-1: absent). The first
    occurrence of an id is kept; later ones are counted (``duplicate <kind> id, kept first``)."""
    handles = np.full(len(wanted), -1, dtype=np.int64)
    for key, handle, where in table.scan(report, on_error):
        slot = wanted.get(key)
        if slot is None:
            continue
        if handles[slot] >= 0:
            report.skip(f"duplicate {table.kind} id, kept first", where)
            continue
        handles[slot] = handle
    return handles
