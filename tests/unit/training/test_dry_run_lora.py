"""--dry-run with LoRA: frozen base weights without gradients or optimizer state, adapters with
both; the 30B LoRA recipe fits one 8 x 80 GB node where full fine-tuning does not."""

import dataclasses
from pathlib import Path

import pytest

from megatron_hybridir.config import load_config
from megatron_hybridir.model.builder import count_parameters
from megatron_hybridir.training.dry_run import estimate, format_estimate

ROOT = Path(__file__).resolve().parents[3]


def _without_lora(config):
    return dataclasses.replace(config, model=dataclasses.replace(config.model, lora=None),
                               checkpoint=dataclasses.replace(config.checkpoint, init_from=None))


def test_30b_lora_recipe_fits_one_node_and_full_fine_tuning_does_not():
    config = load_config(ROOT / "examples" / "retriever_30b_lora.yaml")
    e = estimate(config, world_size=8)
    assert (e["tp"], e["pp"], e["dp"]) == (8, 1, 1)
    assert e["memory_total_gib"] < 80
    full = estimate(_without_lora(config), world_size=8)
    assert full["memory_total_gib"] > 80
    lora = e["lora"]
    # bf16 frozen base: 2 bytes per parameter over TP=8, nothing else for it.
    assert lora["frozen_weights_gib"] == pytest.approx(count_parameters(config.model) * 2 / 8 / 2**30,
                                                       rel=1e-6)
    # Adapters: weights (2 B) + fp32 grads (4 B) + Adam (12 B, DP=1) per trainable parameter.
    per_gpu = lora["trainable_parameters_per_gpu"]
    assert lora["adapter_optimizer_gib"] == pytest.approx(per_gpu * 12 / 2**30)
    assert e["memory_static_gib"] == pytest.approx(
        lora["frozen_weights_gib"] + lora["adapter_weights_gib"] + lora["adapter_grads_gib"]
        + lora["adapter_optimizer_gib"], rel=1e-9)
    # r=16 on qkv/proj/fc1/fc2 of Qwen3-32B: r * (in + out) per linear and layer.
    m = config.model
    qkv_out = 128 * (64 + 2 * 8)
    per_layer = 16 * ((5120 + qkv_out) + (64 * 128 + 5120) + (5120 + 2 * 25600) + (25600 + 5120))
    assert lora["adapter_parameters"] == m.num_layers * per_layer
    text = format_estimate(e)
    assert "only these are in the optimizer" in text and "frozen base weights" in text


def test_7b_lora_recipe_plan():
    e = estimate(load_config(ROOT / "examples" / "retriever_7b_lora.yaml"), world_size=8)
    assert e["lora"] and e["memory_total_gib"] < 80
