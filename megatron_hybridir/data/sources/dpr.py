"""NQ in DPR's training form (``biencoder-nq-train.json``) -> English monolingual records.

Why it exists: DPR's training files are one JSON list of several GiB. ``json.load`` would hold all
of it, and every Python object of it, in memory; :func:`json_array` instead decodes one element at
a time with ``json.JSONDecoder.raw_decode`` over a buffer refilled in chunks (``ijson`` is not a
dependency), so memory is one element plus one chunk.

The fields relied on (DPR's README and data files): each element has ``question`` (string),
``answers`` (list), ``positive_ctxs``, ``negative_ctxs`` and ``hard_negative_ctxs``, lists of
``{"title", "text", "score", "title_score", "passage_id"}`` (``psg_id`` in some dumps). A passage
becomes ``title + " " + text``, as evaluation encodes NQ's passages.

Per element one item (id ``dpr-<index>``): the first positive context; the negatives are the
``hard_negative_ctxs`` (DPR's BM25 hard negatives) in order, then ``negative_ctxs`` only with
``use_negative_ctxs=True``, without the positives (by passage id or text), at most
``max_negatives``. An element without a positive is dropped and counted.

What it does not do: read the NQ test set (``evaluation/loaders.py``).
"""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.rows import build_rows, dataset_rows, mono_record, need, passages

FIELDS = "question, answers, positive_ctxs, negative_ctxs, hard_negative_ctxs"
_IDS = ("passage_id", "psg_id")
_WHITESPACE = " \t\n\r"


class _Buffer:
    """Decoded text of a file read in chunks, with the line number of its start."""

    def __init__(self, path: Path, chunk_size: int):
        opener = gzip.open if path.suffix == ".gz" else open
        self.handle, self.path, self.chunk_size = opener(path, "rb"), path, chunk_size
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.pos, self.line, self.eof, self.bytes = "", 0, 1, False, 0

    def more(self) -> bool:
        if self.eof:
            return False
        raw = self.handle.read(self.chunk_size)
        self.bytes += len(raw)
        self.eof = not raw
        # Drop what was consumed here, once per chunk (not per element: copying the rest of the
        # buffer after every element would cost a chunk per element).
        self.text, self.pos = self.text[self.pos:], 0
        try:
            self.text += self.decoder.decode(raw, final=self.eof)
        except UnicodeDecodeError as err:
            line = self.line + self.text.count("\n")
            raise DataError(f"{self.path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x}); "
                            f"re-encode the file as UTF-8",
                            reason="not UTF-8") from None
        return True

    def skip_space(self) -> Optional[str]:
        """The next non-space character (not consumed), or None at the end of the file."""
        while True:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            self.line += self.text.count("\n", start, self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return None

    def advance(self, end: int) -> None:
        """Consume text up to ``end`` (memory stays one element + one chunk)."""
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end


def json_array(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[tuple[str, object]]:
    """(``file:line [index]``, element) of a JSON array file (.json or .json.gz), one at a time."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    buf, decoder, index = _Buffer(path, chunk_size), json.JSONDecoder(), 0
    # The bar counts compressed bytes of a plain file only (a .gz's decompressed size is unknown).
    total = None if path.suffix == ".gz" else path.stat().st_size
    with buf.handle, tqdm(total=total, unit="B", unit_scale=True, desc=path.name,
                          leave=False) as bar:
        if buf.skip_space() != "[":
            raise DataError(f"{path}:{buf.line}: expected a JSON list of DPR elements ('['), got "
                            f"{buf.text[buf.pos:buf.pos + 20]!r}", reason="not a JSON list")
        buf.advance(buf.pos + 1)
        while True:
            char = buf.skip_space()
            if char == "]" and index == 0:
                return _end(buf, path)
            if char is None:        # '[' or ',' was the last character
                raise DataError(f"{path}:{buf.line}: the JSON list ends without ']' after "
                                f"element {index - 1}", reason="malformed JSON")
            where = f"{path}:{buf.line} [{index}]"
            while True:
                try:
                    element, end = decoder.raw_decode(buf.text, buf.pos)
                    # A value that reaches the buffer's end may continue in the next chunk.
                    if end < len(buf.text) or not buf.more():
                        break
                except json.JSONDecodeError as err:
                    if not buf.more():
                        line = buf.line + buf.text.count("\n", buf.pos, err.pos)
                        raise DataError(f"{path}:{line}: malformed JSON in element {index} "
                                        f"({err.msg})", reason="malformed JSON") from None
            buf.advance(end)
            yield where, element
            index += 1
            bar.update(buf.bytes - bar.n)
            char = buf.skip_space()
            if char == "]":
                return _end(buf, path)
            if char is None:
                raise DataError(f"{path}:{buf.line}: the JSON list ends without ']' after "
                                f"element {index - 1}", reason="malformed JSON")
            if char != ",":
                raise DataError(f"{path}:{buf.line}: expected ',' or ']' after element {index - 1}, "
                                f"got {char!r}", reason="malformed JSON")
            buf.advance(buf.pos + 1)


def _end(buf: _Buffer, path: Path) -> None:
    buf.advance(buf.pos + 1)
    if buf.skip_space() is not None:
        raise DataError(f"{path}:{buf.line}: text after the end of the JSON list: "
                        f"{buf.text[buf.pos:buf.pos + 20]!r}", reason="malformed JSON")


def dpr_records(source, report: BuildReport, *, max_negatives: Optional[int] = None,
                use_negative_ctxs: bool = False, lang: str = "en",
                on_error: str = "raise") -> Iterator[tuple[str, dict]]:
    """``source``: a DPR .json / .json.gz file, or a ``datasets`` table with DPR's fields."""
    is_file = isinstance(source, (str, Path))
    rows = json_array(source) if is_file else dataset_rows(source, "dpr")
    counter = iter(range(1 << 62))

    def make(where: str, row) -> Optional[dict]:
        index = next(counter)
        spec = f"DPR: {FIELDS}"
        question = need(row, "question", where, (str,), "a string", source=spec)
        positives = passages(row, "positive_ctxs", where, source=spec, id_keys=_IDS, required=True)
        negatives = passages(row, "hard_negative_ctxs", where, source=spec, id_keys=_IDS,
                             required=False)
        if use_negative_ctxs:
            negatives += passages(row, "negative_ctxs", where, source=spec, id_keys=_IDS,
                                  required=False)
        return mono_record(item_id=f"dpr-{index}", lang=lang, query=question, positives=positives,
                           negatives=negatives, max_negatives=max_negatives, report=report,
                           where=where)

    return build_rows(rows, make, report, on_error)
