"""Shared fixtures: a one-process Megatron runtime and tiny model configs; tier markers.

Every test gets the marker of its tier, the folder under ``tests/`` it lives in (pytest.ini lists
them), so `pytest -m unit` or `-m "not e2e"` select tiers without a decorator in each file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

TIERS = ("unit", "distributed", "e2e", "real", "slurm", "gpu", "install")
_TESTS = Path(__file__).resolve().parent

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex.*")
warnings.filterwarnings("ignore", message=".*Apex is not installed.*")


@pytest.fixture(scope="session")
def megatron_runtime():
    """Megatron's parallel state for a single CPU process (TP=PP=DP=1), created once."""
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.runtime.distributed import initialize, shutdown

    info = initialize(ParallelConfig(), seed=1234)
    yield info
    shutdown()


@pytest.fixture
def build_tiny(megatron_runtime):
    """Build a tiny embedding model (fixed seed) with overrides of the tiny preset."""
    import torch

    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.config.presets import preset

    def _build(**overrides):
        torch.manual_seed(0)
        model = build_model(preset("tiny", **overrides), ParallelConfig())
        model.eval()
        return model

    return _build


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier (its folder under tests/); a test outside the tiers is an error."""
    for item in items:
        try:
            tier = Path(str(item.fspath)).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue                           # collected from outside tests/ (a doctest, say)
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in a tier folder, one of "
                                    f"tests/{{{','.join(TIERS)}}}/; got tests/{tier}/")
        item.add_marker(getattr(pytest.mark, tier))
