"""LoRA on Transformer Engine's fused LayerNorm + linear, against TE's return contract.

Transformer Engine needs a GPU, so the TE spec itself runs only on GPU machines
(docs/gpu-results.md). What can be checked here is our side of the contract that Megatron's
``TELayerNormColumnParallelLinear`` forwards from TE's ``LayerNormLinear``: after the LoRA linear
sets ``return_layernorm_output``, the base returns ``((out, ln_out), None)`` without bias
(Megatron wraps TE's ``(out, ln_out)``) and ``(out, bias, ln_out)`` with ``return_bias``. The adapter
must read the *normalised* input ``ln_out``, never the raw hidden state, in both shapes.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.model.lora import LoRASettings, lora_linear_class


class TELikeLayerNormLinear(torch.nn.Module):
    """A pure-torch stand-in returning what Megatron's TE LayerNorm + linear wrapper returns."""

    def __init__(self, input_size: int, output_size: int, *, config, te_return_bias: bool):
        super().__init__()
        self.norm = torch.nn.LayerNorm(input_size)
        self.weight = torch.nn.Parameter(torch.randn(output_size, input_size) * 0.1)
        self.bias = torch.nn.Parameter(torch.randn(output_size) * 0.1)
        self.te_return_bias = te_return_bias
        from megatron.core import parallel_state
        self._tp_group = parallel_state.get_tensor_model_parallel_group()   # as Megatron's TE wrappers
        self.return_layernorm_output = False   # as Megatron constructs it
        self.return_layernorm_output_gathered = False

    def forward(self, x):
        ln_out = self.norm(x)
        out = F.linear(ln_out, self.weight)
        if self.te_return_bias:
            return (out, self.bias, ln_out) if self.return_layernorm_output else (out, self.bias)
        out = out + self.bias
        return ((out, ln_out) if self.return_layernorm_output else out), None


@pytest.mark.parametrize("return_bias", [False, True])
def test_fused_norm_adapter_reads_the_normalised_input(megatron_runtime, return_bias):
    config = SimpleNamespace(use_cpu_initialization=True, params_dtype=torch.float32,
                             sequence_parallel=False, gated_linear_unit=False)
    settings = LoRASettings(rank=4, alpha=8.0, dropout=0.0, target="qkv")
    cls = lora_linear_class(TELikeLayerNormLinear, settings, fused_norm=True)
    torch.manual_seed(0)
    layer = cls(16, 24, config=config, te_return_bias=return_bias)
    assert layer.return_layernorm_output and layer.return_layernorm_output_gathered
    with torch.no_grad():
        layer.lora_b.copy_(torch.randn_like(layer.lora_b))
    x = torch.randn(5, 2, 16) * 3 + 1          # far from normalised: reading x would differ
    out, bias = layer(x)
    ln = layer.norm(x)
    base = F.linear(ln, layer.weight) + (0 if return_bias else layer.bias)
    expected = base + settings.scale * F.linear(F.linear(ln, layer.lora_a), layer.lora_b)
    torch.testing.assert_close(out, expected)
    assert (bias is layer.bias) if return_bias else bias is None
