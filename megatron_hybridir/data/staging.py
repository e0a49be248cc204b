"""Write an output folder so that readers see the old complete folder or the new complete one.

Why it exists: preprocessing rewrote ``.bin`` files in place, so a run that failed halfway left new
token files beside the old ``manifest.json`` and ``.idx`` files, and the mix loaded and served
shifted tokens. :func:`staged_folder` yields a sibling ``.<name>.tmp-<pid>`` folder; only when the
block finishes is the old folder moved aside and the new one renamed into place (same filesystem,
so each rename is atomic). On any exception the staging folder is deleted and the old folder is
untouched. :func:`file_sizes` / :func:`check_file_sizes` record every file's size in a manifest and
check it on load, so a truncated or replaced file is named instead of read.

What it does not do: decide what goes into the folder, or check file contents beyond sizes (token
files of a 30B-scale corpus are too large to hash at every load; checkpoints do hash theirs).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from megatron_hybridir.atomic import atomic_folder


@contextmanager
def staged_folder(final: str | Path, *, marker: str,
                  owned_suffixes: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``final`` when the block completes.

    ``marker`` is the file that identifies a folder this code wrote (e.g. ``manifest.json``): an
    existing non-empty ``final`` without it is refused rather than replaced, so pointing the output
    at the wrong folder cannot delete someone's files — unless every file in it ends with one of
    ``owned_suffixes`` (what an interrupted run of the older, in-place writer left behind).
    """
    final = Path(final)
    ours = final.is_dir() and ((final / marker).exists() or all(
        p.is_file() and p.name.endswith(owned_suffixes) for p in final.iterdir()))
    if final.exists() and not ours:
        raise FileExistsError(f"{final}: exists and is not an output of this tool (no {marker}); "
                              f"refusing to replace it — choose another output folder")
    with atomic_folder(final) as stage:
        yield stage


def file_sizes(folder: str | Path, *, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """{file name: bytes} of the plain files directly in ``folder``."""
    folder = Path(folder)
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in exclude}


def check_file_sizes(folder: str | Path, expected: dict[str, int], *, manifest: str) -> None:
    """Raise naming the first file that is missing or whose size differs from ``expected``."""
    folder = Path(folder)
    for name, size in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: listed in {manifest} but missing; the folder is incomplete "
                             f"(re-run preprocessing)")
        actual = path.stat().st_size
        if actual != size:
            raise ValueError(f"{path}: {actual} bytes, {manifest} says {size}; the file was "
                             f"truncated or replaced after preprocessing (re-run preprocessing)")
