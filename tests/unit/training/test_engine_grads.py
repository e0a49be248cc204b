"""Gradients of a step do not depend on what the optimizer did at the previous step."""

from __future__ import annotations

import torch
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.config.presets import preset
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.data.synthetic import random_token_batch


def test_second_step_gradients_are_not_accumulated_twice(megatron_runtime):
    loss = LossConfig(temperature=0.05)
    torch.manual_seed(0)
    model = wrap_ddp([build_model(preset("tiny"), ParallelConfig(), loss=loss)])
    optimizer = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=0.0), model)
    batch = [random_token_batch(num_queries=4, num_negatives=1, seq_length=8, vocab_size=250,
                                generator=torch.Generator().manual_seed(0))]
    grads = []
    for _ in range(3):  # lr=0: weights never change, so every step's gradient must be identical
        forward_backward(model, batch, loss=loss)
        grads.append(torch.cat([p.main_grad.flatten() for p in model[0].module.parameters()]))
        optimizer.step()
    torch.testing.assert_close(grads[1], grads[0])
    torch.testing.assert_close(grads[2], grads[0])


def test_full_activation_recomputation_gives_the_same_gradients(megatron_runtime, monkeypatch):
    from megatron.core import tensor_parallel

    calls = []
    original = tensor_parallel.checkpoint
    monkeypatch.setattr(tensor_parallel, "checkpoint",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    loss = LossConfig(temperature=0.05)
    batch = [random_token_batch(num_queries=3, num_negatives=1, seq_length=8, vocab_size=250,
                                generator=torch.Generator().manual_seed(3))]
    grads = {}
    for mode in ("none", "full"):
        torch.manual_seed(0)
        model = wrap_ddp([build_model(preset("tiny", recompute=mode), ParallelConfig(), loss=loss)])
        model[0].train()
        forward_backward(model, batch, loss=loss)
        grads[mode] = torch.cat([p.main_grad.flatten() for p in model[0].module.parameters()])
    assert grads["none"].abs().sum() > 0
    assert len(calls) == 2  # both layers were checkpointed (and re-run in backward)
    torch.testing.assert_close(grads["full"], grads["none"], atol=1e-6, rtol=1e-5)


def test_gradcache_with_learnable_temperature_equals_the_plain_step(megatron_runtime):
    from megatron_hybridir.training.gradcache import gradcache_forward_backward

    loss = LossConfig(temperature=0.05, learnable_temperature=True, symmetric=True)
    batch = [random_token_batch(num_queries=4, num_negatives=1, seq_length=8, vocab_size=250,
                                generator=torch.Generator().manual_seed(5))]
    grads = {}
    for name, step in (("plain", forward_backward), ("gradcache", gradcache_forward_backward)):
        torch.manual_seed(0)
        model = wrap_ddp([build_model(preset("tiny"), ParallelConfig(), loss=loss)])
        step(model, batch, loss=loss)
        grads[name] = {n: p.main_grad.clone() for n, p in model[0].module.named_parameters()}
    assert grads["plain"]["head.log_scale"].abs().item() > 0
    for name, expected in grads["plain"].items():
        torch.testing.assert_close(grads["gradcache"][name], expected, atol=1e-6, rtol=1e-5,
                                   msg=name)
