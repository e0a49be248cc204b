"""GradCache with distillation (teacher scores split with their micro-batches) gives the loss and
gradients of the whole batch in one piece, and the distillation term really changes them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.config.presets import preset
from megatron_hybridir.config.schema import DistillationConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.gradcache import gradcache_forward_backward

B, K = 8, 2


def _batch():
    batch = random_token_batch(num_queries=B, num_negatives=K, seq_length=8, vocab_size=250,
                               generator=torch.Generator().manual_seed(4))
    teacher = torch.randn(B, 1 + K, generator=torch.Generator().manual_seed(9)) * 3
    teacher[6, 1] = float("nan")
    pos_ids = torch.arange(100, 100 + B)
    neg_ids = torch.arange(200, 200 + B * K)
    neg_ids[3 * K] = pos_ids[3]               # row 3's first negative: a copy of its positive
    return dataclasses.replace(batch, teacher_scores=teacher, positive_ids=pos_ids,
                               negative_ids=neg_ids)


def _run(step, micro, loss):
    torch.manual_seed(0)
    model = wrap_ddp([build_model(preset("tiny"), ParallelConfig(), loss=loss)])
    (stats,) = step(model, micro, loss=loss)
    grads = torch.cat([p.main_grad.flatten() for p in model[0].module.parameters()])
    return stats, grads


@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_gradcache_distillation_equals_whole_batch(megatron_runtime, kind):
    loss = LossConfig(temperature=0.05, num_hard_negatives=K,
                      distillation=DistillationConfig(weight=1.0, kind=kind, temperature=0.1))
    batch = _batch()
    whole, whole_grads = _run(forward_backward, [batch], loss)
    cached, cached_grads = _run(gradcache_forward_backward, batch.split(2), loss)
    torch.testing.assert_close(cached["distillation"], whole["distillation"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached["loss"], whole["loss"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached_grads, whole_grads, atol=1e-5, rtol=1e-4)
    off, off_grads = _run(forward_backward, [batch], dataclasses.replace(
        loss, distillation=DistillationConfig()))
    assert "distillation" not in off
    assert (whole["loss"] - off["loss"]).item() == pytest.approx(whole["distillation"].item(),
                                                                 rel=1e-4)
    assert (whole_grads - off_grads).abs().max() > 1e-4
