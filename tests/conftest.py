"""Shared fixtures: a one-process Megatron runtime and tiny model configs."""

from __future__ import annotations

import os
import warnings

import pytest

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
