"""GradCache with false-negative masking (a passage planted twice, across micro-batches) gives the
loss and gradients of the whole batch in one piece, and the mask really changes the loss."""

from __future__ import annotations

import dataclasses

import torch

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.config.presets import preset
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.gradcache import gradcache_forward_backward

B = 8


def _batch():
    batch = random_token_batch(num_queries=B, num_negatives=1, seq_length=8, vocab_size=250,
                               generator=torch.Generator().manual_seed(4))
    # Item 5's positive is item 1's passage (same tokens, same content id): another micro-batch.
    batch.input_ids[B + 5] = batch.input_ids[B + 1]
    batch.attention_mask[B + 5] = batch.attention_mask[B + 1]
    # Query 1 reads like that passage, so the copy competes with its positive at full strength.
    batch.input_ids[1] = batch.input_ids[B + 1]
    batch.attention_mask[1] = batch.attention_mask[B + 1]
    positive_ids = torch.arange(100, 100 + B)
    positive_ids[5] = positive_ids[1]
    return dataclasses.replace(batch, positive_ids=positive_ids,
                               negative_ids=torch.arange(200, 200 + B))


def _run(step, micro, loss):
    torch.manual_seed(0)
    model = wrap_ddp([build_model(preset("tiny"), ParallelConfig(), loss=loss)])
    (stats,) = step(model, micro, loss=loss) if step is gradcache_forward_backward else \
        [{k: v for k, v in s.items()} for s in step(model, micro, loss=loss)]
    grads = torch.cat([p.main_grad.flatten() for p in model[0].module.parameters()])
    return stats, grads


def test_gradcache_masked_equals_whole_batch(megatron_runtime):
    loss = LossConfig(temperature=0.05, num_hard_negatives=1, symmetric=True)
    batch = _batch()
    whole, whole_grads = _run(forward_backward, [batch], loss)
    micro = batch.split(2)
    cached, cached_grads = _run(gradcache_forward_backward, micro, loss)
    assert whole["masked"].item() == 2 and cached["masked"].item() == 2   # 1 <-> 5, both ways
    torch.testing.assert_close(cached["loss"], whole["loss"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(cached_grads, whole_grads, atol=1e-6, rtol=1e-4)
    unmasked, _ = _run(forward_backward, [batch],
                       LossConfig(temperature=0.05, num_hard_negatives=1, symmetric=True,
                                  mask_false_negatives=False))
    assert "masked" not in unmasked
    # Unmasked, query 1 splits its mass between two identical columns: about log(2) / 8 more.
    assert unmasked["loss"].item() - whole["loss"].item() > 0.05
