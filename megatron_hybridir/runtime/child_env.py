"""The environment of a child Python process that must run this same copy of the package.

Why it exists: the demos and the study grid start ``python -m megatron_hybridir...`` in
subprocesses. In a checkout that is not installed, the child finds the package only through
``PYTHONPATH``; in an installed package, the parent's copy is the one to run, wherever the
working directory is. Both hold when the folder this package was imported from leads
``PYTHONPATH`` (the parent's entries follow, unchanged).

What it does not do: choose the working directory. Children inherit the caller's, so relative
paths (``--out runs/x``) mean the same in both processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import megatron_hybridir


def child_env(**overrides: str) -> dict[str, str]:
    """``os.environ`` with this package's import folder leading ``PYTHONPATH``, and ``overrides``."""
    import_root = str(Path(megatron_hybridir.__path__[0]).resolve().parent)
    path = os.pathsep.join(p for p in (import_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **overrides}
