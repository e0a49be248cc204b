"""Shared timing for the benchmarks: peers run interleaved, so machine noise hits both alike; on a
GPU each call is timed up to the end of the work it queued."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def interleaved_medians(fns: dict[str, Callable[[], object]], *, steps: int,
                        warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating between them."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
