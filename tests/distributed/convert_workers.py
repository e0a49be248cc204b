"""Rank function for the conversion parity test: a converted HF checkpoint loaded at TP / PP."""

from __future__ import annotations

from pathlib import Path

import torch

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.model_state import load_model_weights
from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import initialize
from megatron_hybridir.training.engine import forward_backward, wrap_ddp

LOSS = LossConfig(temperature=0.05, num_hard_negatives=1)


def batch(vocab: int):
    return random_token_batch(num_queries=4, num_negatives=1, seq_length=10, vocab_size=vocab,
                              generator=torch.Generator().manual_seed(5))


def loss_at_layout(launch, converted: str, parallel: dict, out: str, vocab: int) -> None:
    layout = ParallelConfig(**parallel)
    initialize(layout, seed=3, launch=launch)
    model_cfg, _, _ = resolve_checkpoint(converted)
    chunks = build_model_chunks(model_cfg, layout, loss=LOSS)
    load_model_weights(converted, model=chunks)
    outputs = forward_backward(wrap_ddp(chunks), [batch(vocab)], loss=LOSS)
    if outputs:
        torch.save(outputs[0]["loss"].detach(), Path(out) / f"loss_rank{launch.rank}.pt")
