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


def test_real_token_flops_count_each_row_at_its_own_length():
    from megatron_hybridir.training.flops import real_token_flops

    cfg = preset("tiny")
    one = {s: training_flops(cfg, sequences=1, seq_len=s, gradcache=False) for s in (4, 8, 9)}
    assert real_token_flops(cfg, row_lengths=[4, 9, 4], gradcache=False) == 2 * one[4] + one[9]
    # Two rows of 4 packed into a stream of 8: linears as for 8 tokens, attention 2*4^2 < 8^2.
    packed = real_token_flops(cfg, row_lengths=[4, 4], gradcache=False)
    assert packed < one[8]
    heads, d = cfg.num_attention_heads, cfg.head_dim
    attention = lambda s: 3 * cfg.num_layers * 2 * 2 * s * s * d * heads  # noqa: E731
    assert packed == pytest.approx(one[8] - attention(8) + 2 * attention(4), rel=1e-12)


def test_logged_throughput_counts_real_tokens_and_the_padding_fraction():
    from megatron_hybridir.config import load_config
    from megatron_hybridir.data.batch import Batch
    from megatron_hybridir.data.packing import pack_batch
    from megatron_hybridir.training.flops import real_token_flops
    from megatron_hybridir.training.trainer import _throughput

    config = load_config(None, ["model.preset=tiny", "data.global_batch_size=2",
                                "data.micro_batch_size=1", "loss.num_hard_negatives=1"])
    lengths = torch.tensor([3, 7, 5])
    mask = torch.arange(8)[None, :] < lengths[:, None]
    batch = Batch(input_ids=mask.long(), attention_mask=mask, num_queries=1, num_negatives=1)
    expected = real_token_flops(config.model, row_lengths=[3, 7, 5, 3, 7, 5],
                                gradcache=False) * 2  # two micro-batches, DP=2
    for micro, processed in (([batch, batch], 48), ([pack_batch(batch)] * 2, 32)):
        out = _throughput(config, micro, 2.0, dp_size=2, gpus=4)
        assert out["tflops_per_gpu"] == pytest.approx(expected / 2.0 / 4 / 1e12, rel=1e-12)
        assert out["padding_fraction"] == pytest.approx(1 - 30 / processed)
        assert out["real_tokens_per_s"] == pytest.approx(30 * 2 / 2.0)
