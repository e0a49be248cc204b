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
