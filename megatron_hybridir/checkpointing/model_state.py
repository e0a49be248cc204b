"""The model's sharded state, and reading model weights from a distributed checkpoint folder.

Why it exists: ``checkpoint.init_from`` (a converted HF model or another run, at any parallel
layout), the frozen base of a LoRA run, ``--verify`` and export's TP=1 model (with its adapters)
all read model weights from a checkpoint folder; :func:`load_model_state` is the one way they do
it. Resuming (``training/checkpoint.py``) reads the model together with its optimizer state in
one ``dist_checkpointing.load`` (the optimizer's template refers to the model's tensors), from the
same :func:`model_sharded_state` template, split over the chunks by :func:`chunk_parts`.

What it does not do: save checkpoints, load optimizer state or decide which step to load
(``training/checkpoint.py``); say which folder a path names (``folders``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from megatron.core import dist_checkpointing

from megatron_hybridir.checkpointing.checksums import MANIFEST, verify_checksums
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.safe_metadata import check_metadata
from megatron_hybridir.model.unwrap import unwrap

logger = logging.getLogger(__name__)


def model_sharded_state(model: Sequence[torch.nn.Module]) -> dict:
    """Sharded state dict of all chunks (``model{i}`` keys with virtual pipeline stages)."""
    # Unwrapped chunks: the DDP wrapper would prefix every key with "module.".
    chunks = [unwrap(chunk) for chunk in model]
    if len(chunks) == 1:
        return chunks[0].sharded_state_dict()
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def chunk_parts(model: Sequence[torch.nn.Module], state: dict) -> list[tuple[torch.nn.Module, dict]]:
    """(unwrapped chunk, its part of ``state``) for a state laid out like
    :func:`model_sharded_state`."""
    chunks = [unwrap(chunk) for chunk in model]
    if len(chunks) == 1:
        return [(chunks[0], state)]
    return [(chunk, state[f"model{i}"]) for i, chunk in enumerate(chunks)]


def load_model_state(ckpt: str | Path, model: Sequence[torch.nn.Module], *, fresh_head: bool = False,
                     select: Optional[Callable[[dict], dict]] = None,
                     apply: Optional[Callable[[torch.nn.Module, dict], None]] = None) -> list[str]:
    """Read the model tensors of the distributed checkpoint folder ``ckpt`` into ``model`` (its
    chunks, at this process's parallel layout).

    By default every tensor, each checked to be in ``ckpt`` first; with ``fresh_head``, pooling-head
    tensors the checkpoint lacks (a head changed at fine-tune start: projection, pooler, latent
    attention) keep their initialisation and are returned, any other missing tensor is an error
    naming it. ``select`` reads only part of the model's sharded state instead (LoRA: the frozen
    base, or the adapters), and ``apply(chunk, part)`` loads each chunk's part in place of a
    ``load_state_dict`` that is strict unless head tensors were left fresh."""
    check_metadata(ckpt)        # torch unpickles .metadata on load: refuse a crafted one first
    template = model_sharded_state(model)
    if select is None:
        fresh = _drop_missing(template, Path(ckpt), fresh_head=fresh_head)
    else:
        template, fresh = select(template), []
    state = dist_checkpointing.load({"model": template}, str(ckpt))["model"]
    for chunk, part in chunk_parts(model, state):
        if apply is None:
            chunk.load_state_dict(part, strict=not fresh)
        else:
            apply(chunk, part)
    return fresh


def _drop_missing(template: dict, ckpt: Path, *, fresh_head: bool) -> list[str]:
    """Drop (in place) the head entries ``ckpt`` lacks when ``fresh_head``, returning their names;
    raise naming any other tensor it lacks."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    saved = set(dist_checkpointing.load_tensors_metadata(str(ckpt)))
    chunks = [template] if "model0" not in template else [template[k] for k in sorted(template)]
    fresh, missing = [], []
    for chunk in chunks:
        for name in list(chunk):
            value = chunk[name]
            if isinstance(value, ShardedTensor) and value.key not in saved:
                if fresh_head and name.startswith("head."):
                    fresh.append(name)
                    del chunk[name]
                else:
                    missing.append(name)
    if missing:
        raise KeyError(f"{ckpt}: has no tensor for {missing[:5]} (a different architecture?)")
    return fresh


def load_model_weights(source: str | Path, *, model: Sequence[torch.nn.Module]) -> Path:
    """Load only model weights (no optimizer / step) from a converted folder or another run
    (``checkpoint.init_from``); a run's checkpoint is verified against its checksums first."""
    _, ckpt, _ = resolve_checkpoint(source)
    if (Path(ckpt) / MANIFEST).exists():   # a run's checkpoint (converted folders carry none)
        verify_checksums(ckpt)
    fresh = load_model_state(ckpt, model, fresh_head=True)
    if fresh:
        logger.info("head weights not in %s start from their initialisation: %s", ckpt, fresh)
    logger.info("initialised model weights from %s", ckpt)
    return ckpt
