"""Matryoshka through the training step: the model's loss equals the reference sum over prefixes,
and GradCache over 4 micro-batches (hard negatives on) gives the whole-batch gradient, for a plain
and a LoRA model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.config import LoraConfig, LossConfig, ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.config.presets import preset
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.forward_step import split_embeddings
from megatron_hybridir.training.gradcache import gradcache_forward_backward

LOSS = LossConfig(temperature=0.05, num_hard_negatives=1, matryoshka_dims=[8, 16, "full"],
                  matryoshka_weights=[0.5, 1.0, 1.0])


def _batch():
    return random_token_batch(num_queries=4, num_negatives=1, seq_length=8, vocab_size=250,
                              generator=torch.Generator().manual_seed(9))


def _model(lora: bool):
    torch.manual_seed(0)
    model = build_model(preset("tiny", lora=LoraConfig(rank=4) if lora else None), ParallelConfig(),
                        loss=LOSS)
    if lora:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("lora_b"):
                    p.normal_(0, 0.05)
    return wrap_ddp([model])


def test_the_step_loss_is_the_sum_over_prefixes(megatron_runtime):
    model, batch = _model(False), _batch()
    out = forward_backward(model, [batch], loss=LOSS, forward_only=True)[0]["loss"]
    with torch.no_grad():
        emb = model[0].module(batch.input_ids, batch.attention_mask)
    q, p, n = split_embeddings(emb, num_queries=4, num_negatives=1)
    labels = torch.arange(4)
    reference = 0.0
    for d, w in zip((8, 16, 64), (0.5, 1.0, 1.0)):
        cq, cp, cn = (F.normalize(t[..., :d], dim=-1) for t in (q, p, n))
        reference += w * F.cross_entropy(20.0 * cq @ torch.cat([cp, cn.reshape(-1, d)]).T, labels)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradcache_equals_the_whole_batch_gradient(megatron_runtime, lora):
    batch = _batch()
    grads = {}
    for name in ("whole", "gradcache"):
        model = _model(lora)
        if name == "whole":
            forward_backward(model, [batch], loss=LOSS)
        else:
            micro = batch.split(1)
            gradcache_forward_backward(model, micro, loss=LOSS)
        grads[name] = {n: p.main_grad.clone() for n, p in model[0].module.named_parameters()
                       if p.requires_grad}
    assert all(g.abs().sum() > 0 for n, g in grads["whole"].items() if "lora_" in n or not lora)
    for n, g in grads["whole"].items():   # float32: relative to each tensor's largest entry
        rel = float((grads["gradcache"][n] - g).abs().max() / g.abs().max().clamp_min(1e-8))
        assert rel < 1e-4, f"{n}: max rel difference {rel:.1e}"
