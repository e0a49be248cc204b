"""Writing conversion outputs atomically, and reading the JSON files of an HF folder.

A conversion writes into a temporary sibling folder and renames it into place only when complete
(``megatron_hybridir/atomic.py``), so a failure never leaves a half-written model where a user (or a
later job) would load it. Which
checkpoint a path names is ``checkpointing/folders.resolve_checkpoint`` (training reads it too).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir import atomic
from megatron_hybridir.convert.mappings import ConversionError


# What --overwrite may replace: a folder this package wrote (name -> files that identify it).
OURS = {"converted checkpoint": ("model.yaml", "checkpoint"),
        "Hugging Face export": ("config.json", "modules.json")}


def check_replaceable(output: Path, kind: str) -> None:
    """Refuse to delete ``output`` unless it holds a ``kind`` folder (``OURS``)."""
    expected = OURS[kind]
    if output.is_file() or not all((output / name).exists() for name in expected):
        raise ConversionError(f"--overwrite: {output} does not hold a {kind} (expected "
                              f"{' and '.join(expected)} in it); not deleting it. Choose another "
                              f"output or remove it yourself")


@contextlib.contextmanager
def atomic_folder(output: Path, overwrite: bool = False, kind: Optional[str] = None) -> Iterator[Path]:
    """A temporary folder renamed to ``output`` when the block completes (raises: removed), after
    the conversion's own rule: an existing ``output`` is replaced only with ``overwrite`` and only
    when it holds a ``kind`` folder. Verification belongs inside the block, so a failed check
    leaves nothing at ``output``."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConversionError(f"{output} exists; choose another output or pass --overwrite")
    if output.exists() and kind is not None:
        check_replaceable(output, kind)
    with atomic.atomic_folder(output) as tmp:
        yield tmp


def read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ConversionError(f"{path.parent}: missing {path.name} ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
