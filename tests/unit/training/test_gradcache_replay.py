"""GradCache pass 2 must replay pass 1's dropout masks; without the RNG restore it must refuse."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.config.presets import preset
from megatron_hybridir.training import gradcache
from megatron_hybridir.training.engine import wrap_ddp
from megatron_hybridir.data.synthetic import random_token_batch

LOSS = LossConfig(temperature=0.05, num_hard_negatives=1)


def _setup():
    torch.manual_seed(0)
    chunk = build_model(preset("tiny", hidden_dropout=0.2, attention_dropout=0.2),
                        ParallelConfig())
    chunk.train()
    model = wrap_ddp([chunk])
    g = torch.Generator().manual_seed(1)
    micro = [random_token_batch(num_queries=2, num_negatives=1, seq_length=8, vocab_size=250,
                                generator=g) for _ in range(3)]
    return model, micro


def test_replay_reproduces_dropout_masks(megatron_runtime):
    model, micro = _setup()
    (stats,) = gradcache.gradcache_forward_backward(model, micro, loss=LOSS, check_replay=True)
    assert torch.isfinite(stats["loss"])
    grads = [p.main_grad for p in model[0].module.parameters()]
    assert any(g.abs().sum() > 0 for g in grads)


def test_without_rng_restore_the_replay_check_fails(megatron_runtime, monkeypatch):
    model, micro = _setup()
    monkeypatch.setattr(gradcache, "rng_restore", lambda snapshot: None)
    with pytest.raises(RuntimeError, match="GradCache pass 2 did not replay pass 1"):
        gradcache.gradcache_forward_backward(model, micro, loss=LOSS, check_replay=True)
