"""Refuse a distributed checkpoint whose ``.metadata`` pickle names anything but checkpoint metadata.

Why it exists: torch's ``FileSystemReader.read_metadata`` reads ``<step>/.metadata`` with plain
``pickle.load``, and every load of a Megatron distributed checkpoint (resume, ``init_from``,
export, merge) goes through it. A crafted file (with ``checksums.json`` rewritten to match) would
run code on load. :func:`check_metadata` unpickles the file first with an unpickler that resolves
only the classes a real checkpoint's metadata holds (torch.distributed.checkpoint's metadata,
planner and storage records, ``torch.Size``, torch dtypes, the layout helper and the path a
plain torch save records) and refuses
anything else before torch reads it.

What it does not do: check the tensors (``checksums.py``) or decide which step to load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from megatron_hybridir.checkpointing.errors import CheckpointError

METADATA = ".metadata"
# Modules whose *classes* (dataclasses, enums) make up a checkpoint's metadata; functions in them
# are refused too, so no callable with side effects can be named.
_CLASS_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner",
                  "torch.distributed.checkpoint.filesystem")
_NAMES = {("torch", "Size"), ("torch.serialization", "_get_layout"),
          ("collections", "OrderedDict"),
          # StorageMeta.checkpoint_id of a plain torch.distributed.checkpoint save
          ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath")}


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's ``.metadata`` names a global that checkpoint metadata never holds."""


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path):
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _NAMES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in _CLASS_MODULES:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise UnsafeCheckpointError(
            f"{self.path}: refused to load: the pickle names {module}.{name}, which checkpoint "
            f"metadata never holds (a crafted file would run code here); nothing was executed. "
            f"Use a checkpoint written by this package or by Megatron-Core")


def check_metadata(folder: str | Path) -> None:
    """Raise :class:`UnsafeCheckpointError` unless ``folder/.metadata`` (if any) is plain metadata."""
    path = Path(folder) / METADATA
    if not path.is_file():
        return
    try:
        _MetadataUnpickler(path.read_bytes(), path).load()
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # truncated or not a pickle: torch would fail less clearly
        raise CheckpointError(f"{path}: unreadable checkpoint metadata ({type(err).__name__}: "
                              f"{err})") from None
