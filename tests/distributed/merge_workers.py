"""Rank function for the merge parity test: a TP=1 checkpoint re-saved at another layout."""

from __future__ import annotations

from pathlib import Path

from megatron.core import dist_checkpointing

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.model_state import load_model_weights, model_sharded_state
from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import initialize


def resave_at_layout(launch, source: str, parallel: dict, out: str) -> None:
    """Load ``source`` at ``parallel`` and save the model's sharded state into ``out`` (every rank
    writes its shards, as a training run saved at that layout does)."""
    layout = ParallelConfig(**parallel)
    initialize(layout, seed=3, launch=launch)
    model_cfg, _, _ = resolve_checkpoint(source)
    chunks = build_model_chunks(model_cfg, layout)
    load_model_weights(source, model=chunks)
    dist_checkpointing.save({"model": model_sharded_state(chunks)}, str(Path(out)))
