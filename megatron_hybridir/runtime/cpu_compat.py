"""Compatibility layer that lets Megatron-Core 0.16.1 run on a CPU with the gloo backend.

Why it exists: Megatron-Core assumes CUDA in a handful of places that have nothing to do with the
maths (device placement, the model-parallel RNG tracker, pipeline bookkeeping tensors). Tests, CI and
the CPU quickstart have no GPU, so :func:`apply_cpu_compat` patches exactly those places. It is a
no-op when CUDA is available, and it never changes numerics.

What it changes (and nothing else):

1. ``torch.cuda.current_device`` returns ``torch.device("cpu")``: used for tensor placement by the
   rotary embedding, the global memory buffer of the local attention, tensor-parallel mappings and
   p2p shape exchange.
2. ``torch.cuda.synchronize`` becomes a no-op: called by pipeline p2p communication.
3. ``megatron.core.tensor_parallel.random.CudaRNGStatesTracker`` is replaced by
   :class:`CpuRNGStatesTracker`, which stores and forks the CPU generator's state per name, and the
   tracker singleton is reset so that ``model_parallel_cuda_manual_seed`` seeds the CPU tracker.
   ``_get_cuda_rng_state`` / ``_set_cuda_rng_state`` (used by activation recomputation) become
   no-ops because the CPU state is already saved and restored there separately.
4. In the modules of ``_CUDA_LITERAL_MODULES`` only (pipeline schedules, optimizer, grad
   clipping, grad scaler, the local multi-tensor L2 norm), the module-level name ``torch`` is a
   proxy whose tensor factories (``zeros``, ``ones``, ``empty``, ``tensor``) map
   ``device="cuda"`` to the CPU: those modules allocate small bookkeeping tensors (token counters,
   loss scale, norm buffers) with a literal ``"cuda"``. Every other attribute is the real ``torch``.
5. ``clip_grad_by_total_norm_fp32`` (in ``optimizer.clip_grads`` and where ``optimizer.optimizer``
   imported it) is replaced by :func:`_clip_grad_by_total_norm_cpu`: the original asserts that every
   gradient is a ``torch.cuda.FloatTensor``; the replacement applies the same coefficient
   ``max_norm / (total_norm + 1e-6)`` when it is below 1.
6. ``DistributedOptimizer.__init__`` and ``Float16OptimizerWithFloat16Params.__init__`` (bf16 /
   fp16 without the distributed optimizer) run with ``Tensor.type()`` (no argument) answering the
   CUDA type name for CPU tensors: the constructors sort parameters into fp16 / fp32 groups by
   comparing that name with ``"torch.cuda.FloatTensor"`` and refuse anything else. Only during the
   constructors; the groups they build are the ones they build on a GPU.

What it does not do: make anything fast, or support Transformer Engine, fused kernels or CUDA graphs.
"""

from __future__ import annotations

import contextlib
import logging
import types

import torch

logger = logging.getLogger(__name__)

_APPLIED = False


class CpuRNGStatesTracker:
    """Named RNG streams on the CPU generator, with the interface of Megatron's CUDA tracker."""

    def __init__(self, *args, **kwargs):
        self.use_cudagraphable_rng = False
        self.is_inference_rng_tracker = kwargs.get("is_inference_rng_tracker", False)
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = states

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise ValueError(f"seed {seed} already exists")
        if name in self.states_:
            raise ValueError(f"rng state {name} already exists")
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng"):
        if name not in self.states_:
            raise KeyError(f"rng state {name} is not added")
        outer = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outer)


def _cpu_current_device() -> torch.device:
    return torch.device("cpu")


def _cuda_to_cpu(device):
    if device is not None and torch.device(device).type == "cuda":
        return torch.device("cpu")
    return device


def _on_cpu(factory):
    def wrapped(*args, device=None, **kwargs):
        return factory(*args, device=_cuda_to_cpu(device), **kwargs)

    return staticmethod(wrapped)


class _CpuTorchProxy(types.ModuleType):
    """``torch`` as seen by a patched module: identical except that factories honour the CPU."""

    zeros = _on_cpu(torch.zeros)
    ones = _on_cpu(torch.ones)
    empty = _on_cpu(torch.empty)
    tensor = _on_cpu(torch.tensor)

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, item):
        return getattr(torch, item)


def _clip_grad_by_total_norm_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr).detach() for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        torch._foreach_mul_(grads, clip_coeff)


_CUDA_LITERAL_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.utils",  # the local (non-apex) multi-tensor L2 norm used for grad clipping
)


def _cuda_type_names(init):
    """Wrap a constructor so that ``tensor.type()`` reports CPU tensors under their CUDA names."""
    def wrapped(self, *args, **kwargs):
        real = torch.Tensor.type

        def cuda_named(tensor, *a, **k):
            name = real(tensor, *a, **k)
            if a or k or tensor.device.type != "cpu":
                return name
            return name.replace("torch.", "torch.cuda.", 1)

        torch.Tensor.type = cuda_named
        try:
            init(self, *args, **kwargs)
        finally:
            torch.Tensor.type = real

    return wrapped


def apply_cpu_compat() -> bool:
    """Apply the patches listed in the module docstring once; return True when they are active."""
    global _APPLIED
    if torch.cuda.is_available():
        return False
    if _APPLIED:
        return True
    import importlib

    from megatron.core.tensor_parallel import random as mcore_random

    torch.cuda.current_device = _cpu_current_device
    torch.cuda.synchronize = lambda *a, **k: None
    mcore_random.CudaRNGStatesTracker = CpuRNGStatesTracker
    mcore_random._get_cuda_rng_state = lambda *a, **k: torch.empty(0, dtype=torch.uint8)
    mcore_random._set_cuda_rng_state = lambda *a, **k: None
    mcore_random.initialize_rng_tracker(force_reset=True)
    from megatron.core.optimizer import clip_grads, distrib_optimizer, optimizer

    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    for cls in (distrib_optimizer.DistributedOptimizer,
                optimizer.Float16OptimizerWithFloat16Params):
        cls.__init__ = _cuda_type_names(cls.__init__)
    proxy = _CpuTorchProxy()
    for name in _CUDA_LITERAL_MODULES:
        importlib.import_module(name).torch = proxy
    _APPLIED = True
    logger.info("CUDA not available: Megatron-Core CPU compatibility layer active (gloo backend)")
    return True
