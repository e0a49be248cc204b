"""Adapter-only checkpoints for LoRA runs, tied to the base checkpoint they were trained on.

Why it exists: a LoRA run of a 30B model changes a few hundred MB of adapters; writing the frozen
60 GB base every ``save_interval`` would dominate the run. With a frozen base, ``checkpoint.py``
saves and loads only the trainable tensors (adapters, and the pooling head if it trains) with their
optimizer state, through the same Megatron distributed checkpointing, so they reshard over TP / PP
/ DP like any checkpoint (the adapters' sharded state dict follows the base layer's split,
``model/lora.py``). What makes such a checkpoint meaningful is the base: the run records the base's
path and a content hash (SHA-256 over the files of its distributed checkpoint) in the checkpoint's
common state, and resuming, or exporting, on a base with another hash is refused, naming both.

What it does not do: decide when to save (the trainer) or merge adapters for export
(``convert/lora_merge``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.safe_metadata import check_metadata
from megatron_hybridir.checkpointing.model_state import load_model_state
from megatron_hybridir.model.lora import is_adapter_name
from megatron_hybridir.model.unwrap import unwrap

logger = logging.getLogger(__name__)


class AdapterCheckpointError(RuntimeError):
    """An adapter checkpoint does not fit the base it is combined with."""


def has_frozen_parameters(model: Sequence[torch.nn.Module]) -> bool:
    return any(not p.requires_grad for chunk in model for p in unwrap(chunk).parameters())


def trainable_sharded_state(state: dict) -> dict:
    """The entries of a (possibly nested, per-chunk) sharded state dict that hold trainable
    parameters; buffers, extra states and frozen weights are dropped."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = trainable_sharded_state(value)
        elif getattr(getattr(value, "data", None), "requires_grad", False):
            out[key] = value
    return out


def checkpoint_model_state(model: Sequence[torch.nn.Module], full_state: dict) -> dict:
    """What a training checkpoint holds: everything, or only the trainable tensors when part of
    the model is frozen (LoRA)."""
    return trainable_sharded_state(full_state) if has_frozen_parameters(model) else full_state


def load_chunk_state(chunk: torch.nn.Module, state: dict) -> None:
    """``load_state_dict`` that accepts an adapter-only state: only frozen parameters (and
    non-parameter entries) may be missing, and nothing may be unexpected."""
    module = unwrap(chunk)
    frozen = {name for name, p in module.named_parameters() if not p.requires_grad}
    if not frozen:
        module.load_state_dict(state)
        return
    missing, unexpected = module.load_state_dict(state, strict=False)
    trainable_missing = sorted(set(k for k in missing if not k.endswith("_extra_state")) - frozen)
    if unexpected or trainable_missing:
        raise AdapterCheckpointError(f"adapter checkpoint does not fit the model: missing "
                                     f"{trainable_missing[:5]}, unexpected {unexpected[:5]}")


def content_hash(folder: str | Path) -> str:
    """SHA-256 over the relative paths and bytes of every file of a checkpoint folder."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def base_reference(source: str | Path) -> dict:
    """{"path", "checkpoint", "sha256"} of a base (converted folder, run, or step folder); hashed
    once on rank 0 and broadcast."""
    _, ckpt, _ = resolve_checkpoint(source)
    ref = [None]
    if not dist.is_initialized() or dist.get_rank() == 0:
        ref[0] = {"path": str(Path(source).resolve()), "checkpoint": str(Path(ckpt).resolve()),
                  "sha256": content_hash(ckpt)}
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(ref, src=0)
    return ref[0]


def check_same_base(saved: Optional[dict], current: dict, *, where: str | Path) -> None:
    """Refuse adapters trained on another base than ``current``."""
    if saved is None:
        raise AdapterCheckpointError(f"{where}: the checkpoint names no LoRA base (written by a "
                                     f"full fine-tuning run?); cannot put its adapters on "
                                     f"{current['path']} (sha256 {current['sha256']})")
    if saved["sha256"] != current["sha256"]:
        raise AdapterCheckpointError(
            f"{where}: adapters were trained on base {saved['path']} (sha256 {saved['sha256']}), "
            f"but checkpoint.init_from is {current['path']} (sha256 {current['sha256']}); "
            f"resume with the original base or start a new run directory")


def load_base_weights(source: str | Path, *, model: Sequence[torch.nn.Module]) -> dict:
    """Load the frozen base (and the head, where the base has one) into a LoRA model; returns
    the base reference to store with every adapter checkpoint."""
    _, ckpt, _ = resolve_checkpoint(source)
    check_metadata(ckpt)        # torch unpickles .metadata: refuse a crafted one first
    saved = set(dist_checkpointing.load_tensors_metadata(str(ckpt)))

    def base_part(state: dict) -> dict:
        out = {}
        for name, value in state.items():
            if isinstance(value, dict):
                out[name] = base_part(value)
            elif is_adapter_name(name) or name.endswith("_extra_state"):
                # NOTE: extra states (TE's fp8 scaling history) are not taken from the base;
                # TE rebuilds them within its first steps.
                continue
            elif getattr(value, "key", None) in saved or not getattr(value, "key", None):
                out[name] = value
            elif getattr(getattr(value, "data", None), "requires_grad", False):
                logger.info("base %s has no %s: it starts from its initialisation", ckpt, name)
            else:
                raise AdapterCheckpointError(f"{ckpt}: base checkpoint has no tensor {value.key} "
                                             f"for the frozen {name}")
        return out

    def fit(chunk: torch.nn.Module, part: dict) -> None:
        missing, unexpected = chunk.load_state_dict(part, strict=False)
        frozen_missing = [k for k in missing if not is_adapter_name(k) and
                          not k.endswith("_extra_state") and not k.startswith("head.")]
        if unexpected or frozen_missing:
            raise AdapterCheckpointError(f"{ckpt}: base does not fit the model: missing "
                                         f"{frozen_missing[:5]}, unexpected {unexpected[:5]}")

    load_model_state(ckpt, model, select=base_part, apply=fit)
    ref = base_reference(source)
    logger.info("LoRA base %s loaded (sha256 %s)", ckpt, ref["sha256"][:16])
    return ref
