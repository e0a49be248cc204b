"""Queries, positives and negatives run as separately trimmed forward passes (``segment_lengths``)
give the loss and gradients of the whole padded batch: padding changes the work, not the result."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.config.presets import preset
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.gradcache import gradcache_forward_backward


def _batch(segments: bool):
    batch = random_token_batch(num_queries=4, num_negatives=1, seq_length=24, vocab_size=250,
                               generator=torch.Generator().manual_seed(7), min_length=3)
    batch.attention_mask[:4, 6:] = False            # short queries, long passages
    return dataclasses.replace(batch, input_ids=batch.input_ids.masked_fill(~batch.attention_mask, 0),
                               segment_lengths=(8, 24, 24) if segments else None)


@pytest.mark.parametrize("arch", [{}, {"layer_kind": "bert", "num_query_groups": None,
                                        "type_vocab_size": 2}])
@pytest.mark.parametrize("step", [forward_backward, gradcache_forward_backward])
def test_trimmed_segments_give_the_padded_batchs_loss_and_gradients(megatron_runtime, arch, step):
    loss = LossConfig(temperature=0.05)
    results = {}
    for segments in (False, True):
        torch.manual_seed(0)
        model = wrap_ddp([build_model(preset("tiny", **arch), ParallelConfig(), loss=loss)])
        out = step(model, [_batch(segments)], loss=loss)
        grads = torch.cat([p.main_grad.flatten() for p in model[0].module.parameters()])
        results[segments] = (out[0]["loss"], grads)
    assert results[False][1].abs().sum() > 0
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-6, rtol=1e-5)
    # fp32 sums in another order: a few elements differ by ~1e-6
    torch.testing.assert_close(results[True][1], results[False][1], atol=1e-5, rtol=1e-4)


def test_each_segment_runs_at_its_own_length(megatron_runtime):
    from megatron_hybridir.training.forward_step import embed

    shapes = []

    def spy(ids, mask):
        shapes.append(tuple(ids.shape))
        return mask.sum(1, keepdim=True).float()

    out = embed(spy, _batch(True))
    assert shapes == [(4, 8), (4, 24), (4, 24)]
    assert out.squeeze(1).tolist() == _batch(False).attention_mask.sum(1).float().tolist()
    shapes.clear()
    embed(spy, _batch(False))
    assert shapes == [(12, 24)]
