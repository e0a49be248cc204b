"""GPU-only paths of the model build and the training step, checked on a CPU machine.

Each test makes this machine answer like a GPU machine where that is safe
(``torch.cuda.is_available``), or sends batches to the ``meta`` device, and checks the decision the
code makes: where models and batches are placed, which fused kernels are asked for, and that fp8
without Transformer Engine stops with a clear error.
"""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model import builder
from megatron_hybridir.model.layer_specs import fused_softmax_kernels_available
from megatron_hybridir.config.presets import preset
from megatron_hybridir.runtime import distributed
from megatron_hybridir.training import engine


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
    assert config.masked_softmax_fusion is fused_softmax_kernels_available()
    assert not fused_softmax_kernels_available()      # no Apex kernels on this machine


def test_every_forward_step_gets_its_batch_on_the_compute_device(megatron_runtime, monkeypatch):
    # run_schedule is what hands batches to the forward steps (plain and both GradCache passes);
    # a stand-in schedule records where they arrive.
    seen = []

    def schedule(*, forward_step_func, data_iterator, num_microbatches, **kwargs):
        seen.extend(next(data_iterator).input_ids.device.type for _ in range(num_microbatches))
        return []

    monkeypatch.setattr(distributed, "compute_device", lambda: torch.device("meta"))
    monkeypatch.setattr(engine, "get_forward_backward_func", lambda: schedule)
    g = torch.Generator().manual_seed(0)
    micro = [random_token_batch(num_queries=2, num_negatives=1, seq_length=8, vocab_size=50,
                                generator=g) for _ in range(3)]
    engine.run_schedule([torch.nn.Linear(1, 1)], micro, forward_step=None)
    assert seen == ["meta"] * 3
    assert micro[0].input_ids.device.type == "cpu"       # the caller's batches stay as they were


def test_fp8_without_transformer_engine_stops_at_build_time(megatron_runtime):
    from megatron_hybridir.config import ConfigError, PrecisionConfig

    model = preset("tiny", use_transformer_engine=True)
    with pytest.raises(ConfigError, match="precision.fp8='hybrid' runs through Transformer Engine"):
        builder.build_model(model, ParallelConfig(),
                            precision=PrecisionConfig(dtype="bf16", fp8="hybrid"))
