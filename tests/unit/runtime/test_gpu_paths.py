"""GPU-only paths of the model build and the training step, checked on a CPU machine.

Each test makes this machine answer like a GPU machine where that is safe
(``torch.cuda.is_available``), or sends batches to the ``meta`` device, and checks the decision the
code makes: where models and batches are placed, which fused kernels are asked for, and that fp8
without Transformer Engine stops with a clear error.
"""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import LossConfig, ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model import builder
from megatron_hybridir.model.presets import preset
from megatron_hybridir.runtime import distributed
from megatron_hybridir.training import gradcache
from megatron_hybridir.training.forward_step import make_forward_step


def test_meta_skeleton_on_a_gpu_machine_allocates_nothing(megatron_runtime, monkeypatch):
    # The converters build shape-only skeletons under torch.device("meta"); Megatron's GPU
    # initialisation names the device explicitly and would fill the GPU with the whole model.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with torch.device("meta"):
        model = builder.build_model(preset("tiny"), ParallelConfig())
    devices = {p.device.type for p in model.parameters()}
    assert devices == {"meta"}


def test_gpu_build_asks_for_fused_softmax_only_when_its_kernels_exist(megatron_runtime,
                                                                       monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert builder.builds_on_gpu()
    config = builder.transformer_config(preset("tiny"), ParallelConfig())
    assert config.use_cpu_initialization is False
    assert config.masked_softmax_fusion is builder.fused_softmax_kernels_available()
    assert not builder.fused_softmax_kernels_available()      # no Apex kernels on this machine


class _RecordingModel(torch.nn.Module):
    """Stands in for the embedder: records where its inputs are."""

    def __init__(self):
        super().__init__()
        self.devices: list[str] = []

    def forward(self, input_ids, attention_mask):
        self.devices += [input_ids.device.type, attention_mask.device.type]
        return torch.zeros(input_ids.size(0), 4, device=input_ids.device)


def test_forward_steps_move_each_batch_to_the_compute_device(monkeypatch):
    monkeypatch.setattr(distributed, "compute_device", lambda: torch.device("meta"))
    batch = random_token_batch(num_queries=2, num_negatives=1, seq_length=8, vocab_size=50,
                               generator=torch.Generator().manual_seed(0))
    model = _RecordingModel()
    make_forward_step(LossConfig(), dp_group=None)(iter([batch]), model)
    gradcache._embedding_step(iter([batch]), model)
    assert model.devices == ["meta"] * 4
    assert batch["input_ids"].device.type == "cpu"       # the caller's batch is left as it was


def test_fp8_without_transformer_engine_stops_at_build_time(megatron_runtime):
    from megatron_hybridir.config import ConfigError, PrecisionConfig

    model = preset("tiny", use_transformer_engine=True)
    with pytest.raises(ConfigError, match="precision.fp8='hybrid' runs through Transformer Engine"):
        builder.build_model(model, ParallelConfig(),
                            precision=PrecisionConfig(dtype="bf16", fp8="hybrid"))
