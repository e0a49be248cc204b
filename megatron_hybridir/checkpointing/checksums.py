"""Checksums of checkpoint folders: written at save, verified before a load.

Why it exists: a shard overwritten in place with the same size loaded without error and trained on
from wrong weights; a truncated shard or ``.metadata`` failed inside torch without naming the file.
:func:`write_checksums` records the sha256 and size of every file of a step folder in
``checksums.json``, written last, so a folder without it was never completed.
:func:`verify_checksums` recomputes them. Both split the files over the ranks (each hashes every
world-size-th file, results are gathered), so a 30B checkpoint is hashed at the speed of all nodes.

What it does not do: decide which step to load or when to save (``training/checkpoint.py``, the
trainer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import torch.distributed as dist

from megatron_hybridir import atomic

MANIFEST = "checksums.json"


class CheckpointCorruptError(RuntimeError):
    """A checkpoint file is missing, truncated or changed; the message names it."""


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _gather(local: dict) -> dict:
    """Union of every rank's dict (the rank's own when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return local
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return {k: v for part in parts for k, v in part.items()}


def _my_share(names: list[str]) -> list[str]:
    if dist.is_available() and dist.is_initialized():
        return names[dist.get_rank()::dist.get_world_size()]
    return names


def write_checksums(folder: str | Path) -> dict:
    """Hash every file of ``folder`` (collective) and write ``checksums.json`` on rank 0, last."""
    folder = Path(folder)
    names = _files(folder) if _rank() == 0 else None
    names = _broadcast(names)
    local = {n: {"sha256": _sha256(folder / n), "bytes": (folder / n).stat().st_size}
             for n in _my_share(names)}
    entries = _gather(local)
    if _rank() == 0:
        atomic.write_text(folder / MANIFEST, json.dumps({"files": entries}, indent=1,
                                                        sort_keys=True))
    return entries


def verify_checksums(folder: str | Path) -> None:
    """Raise :class:`CheckpointCorruptError` naming the first bad file (same answer on every rank)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise CheckpointCorruptError(f"{manifest}: missing; the checkpoint was not completed")
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointCorruptError(f"{manifest}: unreadable ({err})") from None
    problems = {}
    for name in _my_share(sorted(entries)):
        problem = _check_file(folder / name, entries[name])
        if problem:
            problems[name] = problem
    problems = _gather(problems)
    extra = sorted(set(_files(folder)) - set(entries))
    if problems:
        name = sorted(problems)[0]
        raise CheckpointCorruptError(f"{folder / name}: {problems[name]}")
    if extra:
        raise CheckpointCorruptError(f"{folder / extra[0]}: not listed in {manifest}; the folder "
                                     f"was changed after it was saved")


def _check_file(path: Path, entry: dict) -> Optional[str]:
    if not path.is_file():
        return f"missing (listed in {MANIFEST})"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{size} bytes, {MANIFEST} says {entry['bytes']} (truncated or replaced)"
    digest = _sha256(path)
    if digest != entry["sha256"]:
        return (f"sha256 {digest[:16]}... differs from {MANIFEST} ({entry['sha256'][:16]}...): "
                f"the file was changed after it was saved")
    return None


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _broadcast(obj):
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
