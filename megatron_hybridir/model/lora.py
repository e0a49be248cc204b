"""LoRA on Megatron-Core's column- and row-parallel linears, sharded the way the base is sharded.

Why it exists: 7B-30B retrievers are mostly trained with LoRA, and no peer trainer offers LoRA
together with tensor / pipeline parallelism. A LoRA linear computes

    y = W x + (alpha / r) * B A x          (B starts at zero: step 0 is the base model)

and must split like W (DESIGN.md section 8):

- column-parallel base (W split by output rows; qkv, fc1): A [r, in] replicated, B [out/TP, r]
  split like W. The input is full on every rank (gathered first under sequence parallelism), so
  A x is computed redundantly; ``copy_to_tensor_model_parallel_region`` on A x all-reduces its
  gradient, which makes A's gradient complete (and identical) on every TP rank.
- row-parallel base (W split by input columns; attention output ``proj``, fc2): A [r, in/TP] split
  like W, B [out, r] replicated. The partial products A_t x_t are summed over TP by the same
  collective the base uses (all-reduce, or reduce-scatter under sequence parallelism). Under SP
  each rank then holds a slice of the sequence, so B's gradient is partial; B is tagged
  ``sequence_parallel`` and Megatron's ``finalize_model_grads`` sums it over TP like a norm weight.

The adapters are built through the layer spec: each targeted linear class (local, or Transformer
Engine's, imported lazily) is subclassed with :class:`_LoRAMixin`, so checkpoint names of the base
stay unchanged (``...linear_qkv.weight``) and the adapters sit beside them (``...linear_qkv.lora_a``,
``...lora_b``). Split adapters carry Megatron's tensor-parallel attributes, so gradient clipping
counts them once, and their sharded state dict uses the base's axis (and the SwiGLU factory for a
gated fc1), so adapter checkpoints reshard across TP layouts.

What it does not do: load the base or write checkpoints (``training/adapter_checkpoint``), merge
for export (``convert/lora_merge``), or choose which parameters the optimizer holds (it only sets
``requires_grad``; Megatron's DDP and optimizer skip frozen parameters).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.tensor_parallel.layers import (
    ColumnParallelLinear, RowParallelLinear, set_tensor_model_parallel_attributes)
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.utils import (get_pg_rank, get_pg_size, make_sharded_tensor_for_checkpoint,
                               make_tp_sharded_tensor_for_checkpoint)
from torch import Tensor

# target name -> (submodule of the layer, linear inside it, how the base is split)
TARGETS = {"qkv": ("self_attention", "linear_qkv", "column"),
           "proj": ("self_attention", "linear_proj", "row"),
           "fc1": ("mlp", "linear_fc1", "column"),
           "fc2": ("mlp", "linear_fc2", "row")}
ADAPTER_SUFFIXES = ("lora_a", "lora_b")


@dataclass(frozen=True)
class LoRASettings:
    """What one LoRA linear needs to know (bound to its class by :func:`lora_linear_class`)."""

    rank: int
    alpha: float
    dropout: float
    target: str          # qkv / proj / fc1 / fc2

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def mode(self) -> str:
        return TARGETS[self.target][2]


def is_adapter_name(name: str) -> bool:
    """True for a LoRA parameter's state-dict name."""
    return name.rsplit(".", 1)[-1] in ADAPTER_SUFFIXES


def layer_tp_group(layer: torch.nn.Module):
    """The tensor-parallel group the wrapped linear was built with: Megatron's layers keep it as
    ``tp_group``, its Transformer Engine wrappers as ``_tp_group``. Taken from the layer (not from
    ``parallel_state``) so that the adapter is split exactly as its base weight is."""
    for name in ("tp_group", "_tp_group"):
        group = getattr(layer, name, None)
        if group is not None:
            return group
    raise TypeError(f"LoRA: {type(layer).__mro__[1].__name__} has no tp_group / _tp_group "
                    f"attribute; the adapter cannot tell its tensor-parallel layout")


class _LoRAMixin:
    """Adds ``lora_a`` / ``lora_b`` to a Megatron (or TE) parallel linear; see the module docstring.

    Subclasses set ``lora_settings`` (a class attribute) and ``_fused_norm`` (TE's
    LayerNorm + linear, whose input is the un-normalised hidden state).
    """

    lora_settings: LoRASettings
    _fused_norm: bool = False

    def __init__(self, input_size: int, output_size: int, *args, **kwargs):
        super().__init__(input_size, output_size, *args, **kwargs)
        config = kwargs["config"]
        s = self.lora_settings
        self._lora_tp_group = layer_tp_group(self)
        tp, rank = get_pg_size(self._lora_tp_group), get_pg_rank(self._lora_tp_group)
        column = s.mode == "column"
        a_shape = (s.rank, input_size if column else input_size // tp)
        b_shape = (output_size // tp if column else output_size, s.rank)
        device = None if config.use_cpu_initialization else torch.cuda.current_device()
        self.lora_a = torch.nn.Parameter(torch.empty(a_shape, dtype=config.params_dtype, device=device))
        self.lora_b = torch.nn.Parameter(torch.zeros(b_shape, dtype=config.params_dtype, device=device))
        with torch.no_grad():
            # The full A is drawn on every rank from the default generator (seeded alike on every
            # rank) and sliced, so the adapters do not depend on the TP layout. PEFT's init.
            full = torch.empty(s.rank, input_size, dtype=torch.float32,
                               device="meta" if self.lora_a.is_meta else "cpu")
            torch.nn.init.kaiming_uniform_(full, a=math.sqrt(5))
            mine = full if column else full.chunk(tp, dim=1)[rank]
            self.lora_a.copy_(mine.to(self.lora_a.dtype))
        if column:
            set_tensor_model_parallel_attributes(self.lora_b, True, 0, 1)
        else:
            set_tensor_model_parallel_attributes(self.lora_a, True, 1, 1)
            # NOTE: under SP each rank's B sees one sequence slice: finalize_model_grads sums it.
            self.lora_b.sequence_parallel = config.sequence_parallel
        self._lora_sp = config.sequence_parallel
        self._lora_gated = s.target == "fc1" and config.gated_linear_unit
        self.lora_dropout = torch.nn.Dropout(s.dropout) if s.dropout > 0 else torch.nn.Identity()
        if self._fused_norm:
            # TE LayerNorm+linear: LoRA must see the normalised input, gathered under SP.
            self.return_layernorm_output = True
            self.return_layernorm_output_gathered = True

    def forward(self, x: Tensor, *args, **kwargs):
        out = super().forward(x, *args, **kwargs)
        # Megatron / TE return (out, bias), ((out, ln_out), bias) or (out, bias, ln_out).
        bias, lora_in, gathered = None, x, False
        if len(out) == 3:
            out, bias, lora_in = out
            gathered = True
        else:
            out, bias = out
            if isinstance(out, tuple):
                out, lora_in = out
                gathered = True
        return out + self.lora_delta(lora_in, input_gathered=gathered), bias

    def lora_delta(self, x: Tensor, *, input_gathered: bool = False) -> Tensor:
        """(alpha / r) B A x for this rank's output slice; x [s(/TP), b, in(/TP)]."""
        if self.lora_settings.mode == "column":
            if self._lora_sp and not input_gathered:
                # The branch's gradient w.r.t. the full input is complete on every rank (the
                # all-reduce below), so backward only splits it.
                x = tensor_parallel.gather_from_sequence_parallel_region(
                    x, tensor_parallel_output_grad=False, group=self._lora_tp_group)
            a = F.linear(self.lora_dropout(x), self.lora_a)                    # [s, b, r]
            a = tensor_parallel.copy_to_tensor_model_parallel_region(a, group=self._lora_tp_group)
            return F.linear(a, self.lora_b) * self.lora_settings.scale         # [s, b, out/TP]
        with tensor_parallel.get_cuda_rng_tracker().fork():
            x = self.lora_dropout(x)   # x is split over TP: each rank draws its own mask
        a = F.linear(x, self.lora_a)                                           # [s, b, r] partial
        if self._lora_sp:
            a = tensor_parallel.reduce_scatter_to_sequence_parallel_region(
                a, group=self._lora_tp_group)                                  # [s/TP, b, r]
        else:
            a = tensor_parallel.reduce_from_tensor_model_parallel_region(a, group=self._lora_tp_group)
        return F.linear(a, self.lora_b) * self.lora_settings.scale             # [s(/TP), b, out]

    def sharded_state_dict(self, prefix: str = "", sharded_offsets=(), metadata=None):
        state = super().sharded_state_dict(prefix, sharded_offsets, metadata)
        groups = dict(tp_group=self._lora_tp_group,
                      dp_cp_group=(metadata or {}).get("dp_cp_group")
                      or parallel_state.get_data_parallel_group(with_context_parallel=True))
        column = self.lora_settings.mode == "column"
        for name, axis in (("lora_a", None if column else 1), ("lora_b", 0 if column else None)):
            key, param = f"{prefix}{name}", getattr(self, name)
            if axis is None:
                state[key] = make_sharded_tensor_for_checkpoint(
                    param, key, prepend_offsets=sharded_offsets, **groups)
            else:
                state[key] = make_tp_sharded_tensor_for_checkpoint(
                    param, key, axis, prepend_offsets=sharded_offsets, **groups)
        if self._lora_gated:
            # Same TP-independent [gate; up] layout as the base fc1 weight (MLP.sharded_state_dict).
            from megatron.core.transformer.mlp import apply_swiglu_sharded_factory

            key = f"{prefix}lora_b"
            state[key] = apply_swiglu_sharded_factory(state[key], sharded_offsets)
        return state


@functools.lru_cache(maxsize=None)
def lora_linear_class(base: type, settings: LoRASettings, fused_norm: bool = False) -> type:
    """``base`` (a Megatron / TE parallel linear class) with a LoRA adapter."""
    return type(f"LoRA{base.__name__}", (_LoRAMixin, base),
                {"lora_settings": settings, "_fused_norm": fused_norm,
                 "__module__": __name__})


def _base_class(entry) -> type:
    return entry.module if isinstance(entry, ModuleSpec) else entry


def _lora_entry(entry, settings: LoRASettings):
    base = _base_class(entry)
    fused = False
    if base.__module__.startswith("megatron.core.extensions.transformer_engine"):
        # Imported lazily: only TE specs reach here, and only where TE imports.
        from megatron.core.extensions.transformer_engine import TELayerNormColumnParallelLinear

        fused = issubclass(base, TELayerNormColumnParallelLinear)
    elif not issubclass(base, (ColumnParallelLinear, RowParallelLinear)):
        raise TypeError(f"LoRA target {settings.target}: {base.__name__} is neither a Megatron nor "
                        f"a Transformer Engine parallel linear")
    cls = lora_linear_class(base, settings, fused)
    if isinstance(entry, ModuleSpec):
        entry = copy.copy(entry)
        entry.module = cls
        return entry
    return cls


def lora_block_spec(block: TransformerBlockSubmodules, *, rank: int, alpha: float, dropout: float,
                    targets: list[str]) -> TransformerBlockSubmodules:
    """The block spec with the targeted linears of every layer replaced by LoRA linears."""
    layers = []
    for layer in block.layer_specs:
        layer = copy.deepcopy(layer)
        for target in targets:
            owner, linear, _ = TARGETS[target]
            sub = getattr(layer.submodules, owner).submodules
            settings = LoRASettings(rank=rank, alpha=alpha, dropout=dropout, target=target)
            setattr(sub, linear, _lora_entry(getattr(sub, linear), settings))
        layers.append(layer)
    return TransformerBlockSubmodules(layer_specs=layers, layer_norm=block.layer_norm)


def freeze_base(model: torch.nn.Module, *, train_head: bool) -> None:
    """Only adapters (and the pooling head with its temperature, if ``train_head``) train."""
    for name, param in model.named_parameters():
        param.requires_grad = is_adapter_name(name) or (train_head and name.startswith("head."))


def merge_into(weight: Tensor, lora_a: Tensor, lora_b: Tensor, scale: float) -> Tensor:
    """W + scale * B A, in float32 and returned in W's dtype (full, unsharded tensors)."""
    delta = lora_b.float() @ lora_a.float()
    return (weight.float() + scale * delta).to(weight.dtype)


def adapter_parameter_count(*, hidden: int, ffn: int, qkv_out: int, attn_in: int, gated: bool,
                            rank: int, targets: list[str], layers: int, tp: int = 1) -> int:
    """Adapter parameters of ``layers`` layers held by one TP rank (the whole model at tp=1):
    r * (in + out) per targeted linear, the split factor divided by TP (column: B, row: A)."""
    shapes = {"qkv": (hidden, qkv_out), "proj": (attn_in, hidden),
              "fc1": (hidden, ffn * (2 if gated else 1)), "fc2": (ffn, hidden)}
    per_layer = 0
    for t in targets:
        n_in, n_out = shapes[t]
        column = TARGETS[t][2] == "column"
        per_layer += rank * (n_in + n_out // tp if column else n_in // tp + n_out)
    return layers * per_layer
