"""Rank function: a converted checkpoint's final hidden states at a TP layout (gloo ranks)."""

from __future__ import annotations

from pathlib import Path

import torch

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.model_state import load_model_weights
from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import initialize


def hidden_states_at_tp(launch, converted: str, tp: int, batch: str, out: str) -> None:
    layout = ParallelConfig(tensor_model_parallel_size=tp)
    initialize(layout, seed=3, launch=launch)
    model_cfg, _, _ = resolve_checkpoint(converted)
    chunks = build_model_chunks(model_cfg, layout)
    load_model_weights(converted, model=chunks)
    ids, mask = torch.load(batch)
    with torch.no_grad():
        hidden = chunks[0].eval()(ids, mask, return_hidden=True)
    if launch.rank == 0:
        torch.save(hidden, Path(out))
