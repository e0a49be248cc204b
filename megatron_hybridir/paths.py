"""Names that become parts of a path, and paths that must stay inside an output folder.

Why it exists: tools build folder names from user input (a study's size names become
``<out>/cells/<size>_a<alpha>_s<seed>``) and then create or delete those folders. A name such as
``../../victim`` turned a rerun of the study into ``rmtree`` of a folder two levels above its
output. ``safe_name`` checks such a name where it is parsed; ``child_path`` is the last guard
before a tool creates or deletes a folder: the path must resolve inside the parent it was built
from (symbolic links included).

What it does not do: decide where outputs go, or lock them. It imports nothing else of ours, so
every layer (data, mining, study, tools) may use it.
"""

from __future__ import annotations

import re
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
RULE = "letters, digits and . _ - only; no path separators, no '..'"


class UnsafePathError(ValueError):
    """A name or path would leave the folder it belongs to; the message names the value."""


def safe_name(value: str, *, what: str) -> str:
    """``value`` if it is safe as one path part (``RULE``), else an error naming ``what``."""
    if not isinstance(value, str) or not _SAFE.match(value) or ".." in value or value == ".":
        raise UnsafePathError(f"{what}: {value!r} is not a safe name ({RULE})")
    return value


def child_path(parent: str | Path, *parts: str) -> Path:
    """``parent / parts...``, refused unless it resolves strictly inside ``parent``."""
    path = Path(parent).joinpath(*parts)
    root, resolved = Path(parent).resolve(), path.resolve()
    if root not in resolved.parents:
        raise UnsafePathError(f"{path}: resolves to {resolved}, outside {root}; refusing to "
                              f"create or delete it")
    return path
