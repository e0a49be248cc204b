"""Write a file or a folder so that a reader sees the old complete one or the new complete one.

Why it exists: a run killed mid-write (SIGKILL, node failure, a full disk) must never leave a
half-written manifest, metrics log, lock record, checksum list, data file or embedding cache where
the next reader takes it for complete. The pattern is always the same — write under a temporary
sibling name (same folder, so the same filesystem), then ``os.replace`` it onto the final name,
which POSIX makes atomic; on failure delete the temporary — and it lives here once:
:func:`atomic_file` / :func:`write_text` for files, :func:`atomic_folder` for folders (the old
folder is moved aside, the new one renamed into place, then the old one deleted).

What it does not do: fsync (a power loss may still lose the new version, never mix the two), or
decide whether an existing output may be replaced (``data/staging.staged_folder`` checks a marker
file; ``convert/io`` refuses without ``--overwrite``).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temp_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """``<dir>/.<name>.<tag>-<pid>``: hidden, per process, never matching ``<name>``'s own globs."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; renamed onto ``path`` when the block completes, deleted
    when it raises (``path`` is then untouched)."""
    path = Path(path)
    tmp = temp_sibling(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path``'s content by ``text`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``final`` when the block completes.

    On an exception the staging folder is deleted and ``final`` is untouched. On success an existing
    ``final`` is first renamed aside (``.<name>.old-<pid>``), so at every moment ``final`` is either
    the old complete folder or the new one (missing only between two renames), then deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = temp_sibling(final)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = temp_sibling(final, "old")
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)
