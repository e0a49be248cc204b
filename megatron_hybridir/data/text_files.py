"""Finding and reading the text files of a benchmark folder, plain or gzipped, line by line.

Why it exists: evaluation reads BEIR / NQ / MIRACL folders (``evaluation/loaders.py``) and data
building reads the same folders for their queries, to drop training items that leak them
(``data/sources/leakage.py``). Both must find the same file (``name`` or ``name.gz``) and stop on
the same defects with the file and line: a byte that is not UTF-8, a damaged gzip stream. The error
class is the caller's (``EvalDataError`` in evaluation, ``DataError`` in data building).

What it does not do: parse lines (JSON, TSV, CSV are the callers').
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator


def find(folder: Path, *names: str, error: type[Exception] = ValueError) -> Path:
    """The first of ``names`` present in ``folder`` as a plain or a ``.gz`` file."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise error(f"{folder}: missing {' or '.join(names)} (looked for plain and .gz)")


def numbered_lines(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) per line; a byte that is not UTF-8 or a damaged gzip stream
    stops with the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise error(f"{path}:{lineno}: not valid UTF-8 (byte {raw[err.start]:#04x} at "
                                f"column {err.start + 1}); re-encode the file as UTF-8") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise error(f"{path}:{lineno + 1}: not a valid gzip stream ({err})") from None
