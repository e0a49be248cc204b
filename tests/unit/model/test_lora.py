"""LoRA linears in one process: B = 0 gives exactly the base model, the merged weights give the
adapted model, only adapters (and the head) train, names and parameter counts, config errors."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import ConfigError, LoraConfig, ParallelConfig, load_config
from megatron_hybridir.model.builder import build_model
from megatron_hybridir.model.lora import TARGETS, adapter_parameter_count, merge_into
from megatron_hybridir.config.presets import preset

ENCODER = dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
               position_offset=2, type_vocab_size=2, pooling="first", pooler=True)
FAMILIES = {"llama": dict(projection_dim=16), "bert": ENCODER}


def _batch():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 200, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 8:] = False
    return ids, mask


def _pair(family, **lora):
    torch.manual_seed(0)
    base = build_model(preset("tiny", **FAMILIES[family]), ParallelConfig()).eval()
    adapted = build_model(preset("tiny", lora=LoraConfig(rank=4, alpha=8.0, **lora),
                                 **FAMILIES[family]), ParallelConfig()).eval()
    missing, unexpected = adapted.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith(("lora_a", "lora_b")) for k in missing)
    return base, adapted


@pytest.mark.parametrize("family", list(FAMILIES))
def test_zero_b_gives_exactly_the_base_model(megatron_runtime, family):
    base, adapted = _pair(family)
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(adapted(ids, mask), base(ids, mask))
        # A is initialised (not zero): only B = 0 makes the update vanish.
        assert all(p.abs().sum() > 0 for n, p in adapted.named_parameters() if n.endswith("lora_a"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_merged_weights_equal_the_adapted_model(megatron_runtime, family):
    base, adapted = _pair(family)
    g = torch.Generator().manual_seed(1)
    params = dict(adapted.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("lora_b"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        merged = {}
        for name, p in base.named_parameters():
            stem = name.removesuffix(".weight")
            if f"{stem}.lora_a" in params:
                merged[name] = merge_into(p, params[f"{stem}.lora_a"], params[f"{stem}.lora_b"], 2.0)
        assert len(merged) == 4 * 2          # four targets, two layers
        base.load_state_dict({**base.state_dict(), **merged})
        ids, mask = _batch()
        a, b = adapted(ids, mask), base(ids, mask)
    assert (a - b).abs().max().item() < 1e-5
    assert (a - _pair(family)[0](ids, mask)).abs().max().item() > 1e-3   # the adapters matter


def test_only_adapters_and_head_train(megatron_runtime):
    _, adapted = _pair("llama")
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert "head.projection.weight" in trainable
    assert trainable - {"head.projection.weight"} == {
        f"decoder.layers.{i}.{owner}.{linear}.{f}" for i in range(2)
        for owner, linear, _ in TARGETS.values() for f in ("lora_a", "lora_b")}
    _, frozen_head = _pair("llama", train_head=False, target_modules=["qkv", "fc2"])
    names = {n for n, p in frozen_head.named_parameters() if p.requires_grad}
    assert names and all(".linear_qkv.lora_" in n or ".linear_fc2.lora_" in n for n in names)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_adapter_parameter_count(megatron_runtime, family):
    _, adapted = _pair(family)
    m = adapted.config
    count = sum(p.numel() for n, p in adapted.named_parameters() if n.endswith(("lora_a", "lora_b")))
    heads, d = m.num_attention_heads, m.kv_channels
    qkv_out = d * (heads + 2 * (m.num_query_groups or heads))
    assert count == adapter_parameter_count(hidden=m.hidden_size, ffn=m.ffn_hidden_size, qkv_out=qkv_out,
                                            attn_in=heads * d, gated=m.gated_linear_unit, rank=4,
                                            targets=list(TARGETS), layers=m.num_layers)


@pytest.mark.parametrize("override, message", [
    ("model.lora.target_modules=[qkv, attn]", "model.lora.target_modules[1]: expected qkv, proj, fc1 or fc2, got 'attn'"),
    ("model.lora.rank=0", "model.lora.rank: must be >= 1"),
    ("model.lora.dropout=1.0", "model.lora.dropout: must lie in [0, 1)"),
])
def test_lora_config_errors_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.preset=tiny", "checkpoint.init_from=base", override])
    assert message in str(err.value)


def test_lora_needs_a_base():
    with pytest.raises(ConfigError, match="checkpoint.init_from: model.lora trains adapters"):
        load_config(None, ["model.preset=tiny", "model.lora.rank=8"])


@pytest.mark.parametrize("target", ["qkv", "proj"])
def test_adapter_takes_the_tp_group_of_the_layer_it_wraps(megatron_runtime, monkeypatch, target):
    """The adapter is split and reduced over the wrapped linear's own group, never parallel_state's."""
    from types import SimpleNamespace

    import torch.nn.functional as F
    from megatron.core import parallel_state

    from megatron_hybridir.model.lora import LoRASettings, lora_linear_class

    group = torch.distributed.new_group([0])

    class Linear(torch.nn.Module):
        def __init__(self, input_size, output_size, *, config):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(output_size, input_size))
            self.tp_group = group

        def forward(self, x):
            return F.linear(x, self.weight), None

    def forbidden(*args, **kwargs):
        raise AssertionError("LoRA asked parallel_state for the tensor-parallel group")

    for name in ("get_tensor_model_parallel_group", "get_tensor_model_parallel_world_size",
                 "get_tensor_model_parallel_rank"):
        monkeypatch.setattr(parallel_state, name, forbidden)
    config = SimpleNamespace(use_cpu_initialization=True, params_dtype=torch.float32,
                             sequence_parallel=False, gated_linear_unit=False)
    settings = LoRASettings(rank=4, alpha=8.0, dropout=0.0, target=target)
    layer = lora_linear_class(Linear, settings)(16, 24, config=config)
    assert layer._lora_tp_group is group
    with torch.no_grad():
        layer.lora_b.copy_(torch.randn_like(layer.lora_b))
    x = torch.randn(5, 2, 16)
    out, _ = layer(x)
    expected = F.linear(x, layer.weight) + settings.scale * F.linear(F.linear(x, layer.lora_a),
                                                                     layer.lora_b)
    torch.testing.assert_close(out, expected)
