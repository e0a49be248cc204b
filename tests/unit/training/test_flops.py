"""The explicit FLOP count against a count of the matmuls of a real forward pass; the GPU peaks
MFU is measured against."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from megatron_hybridir.config.presets import preset
from megatron_hybridir.training.flops import forward_flops_per_sequence, peak_tflops, training_flops


def test_forward_flops_match_torch_flop_counter(build_tiny):
    cfg = preset("tiny", projection_dim=16)
    model = build_tiny(projection_dim=16)
    ids = torch.randint(1, 250, (3, 24))
    mask = torch.ones(3, 24, dtype=torch.bool)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(ids, mask)
    assert counter.get_total_flops() == 3 * forward_flops_per_sequence(cfg, 24)


def test_latent_attention_flops_match_torch_flop_counter(build_tiny):
    """Per sequence: two batch sizes differ by exactly the per-sequence count (the latents'
    key/value projection runs once per batch and cancels)."""
    head = dict(pooling="latent_attention", latent_num_latents=8, latent_num_heads=4)
    cfg = preset("tiny", **head)
    model = build_tiny(**head)
    totals = []
    for batch in (1, 3):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randint(1, 250, (batch, 24)), torch.ones(batch, 24, dtype=torch.bool))
        totals.append(counter.get_total_flops())
    assert totals[1] - totals[0] == 2 * forward_flops_per_sequence(cfg, 24)
    assert (forward_flops_per_sequence(cfg, 24) - forward_flops_per_sequence(preset("tiny"), 24)
            == 2 * 2 * 24 * 64 * 64 + 2 * 2 * 24 * 8 * 64 + 2 * 2 * 24 * 64 * 4 * 64)


def test_training_multiplier():
    cfg = preset("tiny")
    one = forward_flops_per_sequence(cfg, 16)
    assert training_flops(cfg, sequences=10, seq_len=16, gradcache=False) == 30 * one
    assert training_flops(cfg, sequences=10, seq_len=16, gradcache=True) == 40 * one


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_follows_the_device_name(name, peak):
    assert peak_tflops(name) == peak


@pytest.mark.parametrize("targets", [["qkv", "proj", "fc1", "fc2"], ["fc2"], ["proj", "fc1"]])
@pytest.mark.parametrize("projection_dim", [None, 16])
def test_lora_step_flops_match_torch_flop_counter(megatron_runtime, targets, projection_dim):
    """Forward + backward of a LoRA model as torch counts its matmuls: frozen base weights get no
    weight gradient, and nothing upstream of the first adapter gets an input gradient. The old
    count (3x the forward, as for full training) overstated LoRA's MFU."""
    from megatron_hybridir.config import LoraConfig, ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.model.lora import freeze_base

    cfg = preset("tiny", projection_dim=projection_dim,
                 lora=LoraConfig(rank=4, target_modules=targets, train_head=True))
    torch.manual_seed(0)
    model = build_model(cfg, ParallelConfig())
    freeze_base(model, train_head=True)
    ids = torch.randint(1, 250, (3, 24))
    mask = torch.ones(3, 24, dtype=torch.bool)
    with FlopCounterMode(display=False) as counter:
        model(ids, mask).float().pow(2).sum().backward()
    expected = training_flops(cfg, sequences=3, seq_len=24, gradcache=False)
    assert counter.get_total_flops() == expected
    full = training_flops(preset("tiny", projection_dim=projection_dim), sequences=3, seq_len=24,
                          gradcache=False)
    assert expected < full
