"""The demo's progress line (``[demo HH:MM:SS] message``), in a module of its own so that every
demo step can print it without importing the pipeline that runs the steps."""

from __future__ import annotations

import time


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)
