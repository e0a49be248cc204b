"""Checkpoints through Megatron-Core distributed checkpointing, with an atomic ``latest`` pointer.

Why it exists: a 30B run is preempted and requeued; it must resume exactly where it stopped, possibly
on another parallel layout. Model and optimizer go through ``dist_checkpointing`` (sharded, so they
reshard on load); the scheduler, step and sampler state are common metadata; RNG states are saved
per rank and restored only when the layout is unchanged. A checkpoint is written to
``step_N.tmp``; when every rank has written, the sha256 of every file goes into ``checksums.json``
(written last, ``checkpointing/checksums.py``), the folder is renamed, and only then is ``latest``
replaced (write + os.replace), so a crash mid-save never leaves ``latest`` pointing at a partial
checkpoint.
Loading verifies the checksums first: a changed, truncated or missing file is named, with the last
step that still verifies. A save that fails (a full disk) names the cause and the file; the partial
``step_N.tmp`` folders a failed or killed save leaves are removed by the next launch, which holds
the run directory's lock (``training/run_lock``).

Every file is read with ``torch.load(weights_only=True)``: a checkpoint folder is data, and a
pickle in it (its ``checksums.json`` can be rewritten to match) must not run code on resume. The
per-rank RNG states are therefore plain tensors (``rng_rank<r>.pt``: a dict of tensors).

What it does not do: decide when to save (the trainer does), or read only a model's weights
(``checkpoint.init_from``: ``checkpointing/model_state.load_model_weights``).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing

from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_hybridir.checkpointing.checksums import (
    CheckpointCorruptError,
    verify_checksums,
    write_checksums,
)
from megatron_hybridir.checkpointing.model_state import chunk_parts, model_sharded_state
from megatron_hybridir.checkpointing.safe_metadata import check_metadata
from megatron_hybridir.training.adapter_checkpoint import checkpoint_model_state, load_chunk_state

logger = logging.getLogger(__name__)


def _optimizer_metadata() -> dict:
    """The distributed optimizer's state in the canonical per-parameter layout, so a checkpoint
    reshards over TP / PP / DP like the model does (0.16's default, fully_sharded_model_space, can no
    longer be saved). Without CUDA the exchange goes through the gloo DP group (NCCL otherwise)."""
    return {"distrib_optim_sharding_type": "fully_reshardable",
            "distrib_optim_fully_reshardable_mem_efficient": not torch.cuda.is_available()}


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def latest_step(run_dir: str | Path) -> Optional[int]:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    text = pointer.read_text().strip()
    if not text.isdigit():
        raise CheckpointCorruptError(f"{pointer}: expected a step number, found {text[:40]!r}")
    return int(text)


def last_good_step(root: Path, *, before: int) -> Optional[int]:
    """The newest step folder under ``root`` older than ``before`` whose checksums verify
    (collective: every rank takes part in each verification)."""
    steps = sorted((int(p.name[5:]) for p in root.glob("step_????????")
                    if p.is_dir() and p.name[5:].isdigit()), reverse=True)
    for step in steps:
        if step < before:
            try:
                verify_checksums(root / f"step_{step:08d}")
                return step
            except CheckpointCorruptError:
                continue
    return None


def _offer(root: Path, bad: int) -> str:
    good = last_good_step(root, before=bad)
    if good is None:
        return (f"no earlier checkpoint under {root} verifies; remove {root} to start over, or "
                f"restore the file")
    return (f"the last good checkpoint is step {good} ({root / f'step_{good:08d}'}): resume from "
            f"it with `echo {good} > {root / 'latest'}`")


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; the message names the cause (e.g. a full disk) and the file."""


_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:\n]+)(?:: '([^'\n]+)')?")


def _os_error(err: BaseException) -> Optional[OSError]:
    """The OSError behind a save failure. Megatron's writer processes send theirs back wrapped in
    a RuntimeError, which torch.distributed.checkpoint gathers (pickled, so without its
    ``__cause__``) into a CheckpointException: then only its text ``[Errno N] ...: 'path'`` is
    left, and is parsed."""
    seen, todo = set(), [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        todo += [e.__cause__, e.__context__]
        todo += [pair[0] for pair in (getattr(e, "failures", None) or {}).values()]
    match = _ERRNO_TEXT.search(str(err))
    if match is None:
        return None
    return OSError(int(match.group(1)), match.group(2), match.group(3))


def remove_partial_saves(run_dir: str | Path) -> list[Path]:
    """Delete the ``step_N.tmp`` folders of saves that failed or were killed, and put back a
    ``step_N.old`` whose re-save was killed between moving it aside and moving the new one in (it
    is a complete checkpoint that ``latest`` may name). Only the holder of the run directory's
    lock may call this (no other job can be writing one)."""
    root = Path(run_dir) / "checkpoints"
    for old in sorted(p for p in root.glob("step_*.old") if p.is_dir()):
        final = old.with_suffix("")
        if final.exists():
            logger.warning("removing %s, replaced by %s", old, final)
            shutil.rmtree(old)
        else:
            logger.warning("restoring %s: its re-save did not complete", final)
            os.replace(old, final)
    stale = sorted(p for p in root.glob("step_*.tmp") if p.is_dir())
    for folder in stale:
        logger.warning("removing %s, left by a save that did not complete", folder)
        shutil.rmtree(folder)
    return stale


def save_checkpoint(run_dir: str | Path, step: int, *, model, optimizer, scheduler,
                    extra: dict, keep_last: int = 2) -> Path:
    """Write ``step`` for every rank (collective); returns the final checkpoint folder."""
    root = Path(run_dir) / "checkpoints"
    tmp = root / f"step_{step:08d}.tmp"
    try:
        return _save(root, step, model=model, optimizer=optimizer, scheduler=scheduler,
                     extra=extra, keep_last=keep_last)
    except BaseException as err:     # torch's CheckpointException is a BaseException
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        cause = _os_error(err)
        if cause is None:
            raise
        if (dist.get_rank() if dist.is_initialized() else 0) == 0:
            shutil.rmtree(tmp, ignore_errors=True)    # free what it took; 'latest' is unchanged
        reason = os.strerror(cause.errno).lower() if cause.errno else str(cause)
        code = errno.errorcode.get(cause.errno, cause.errno)
        raise CheckpointSaveError(
            f"saving checkpoint step {step} failed: {reason} ({code}) writing "
            f"{cause.filename or tmp}. The partial folder {tmp} was removed; "
            f"{root / 'latest'} still names the last complete checkpoint. Free space (or fix the "
            f"cause) and relaunch to resume from it") from err


def _rng_state() -> dict:
    """This rank's RNG streams as plain tensors (loadable with ``weights_only=True``)."""
    state = {"cpu": torch.get_rng_state(),
             "tracker": {k: v.clone() for k, v in get_cuda_rng_tracker().get_states().items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(path: Path) -> None:
    """Restore :func:`_rng_state`'s file (or the tuple older checkpoints pickled, which also
    holds only tensors); anything that needs unpickling of code is refused."""
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as err:
        raise CheckpointCorruptError(
            f"{path}: refused to load: it is not plain tensors (torch.load(weights_only=True): "
            f"{str(err).splitlines()[0]}). A checkpoint file that needs unpickling of code could "
            f"run that code; nothing was run. If this checkpoint is yours and its other files "
            f"verify, delete {path.name} to resume without this rank's RNG state (dropout draws "
            f"will differ from an uninterrupted run); otherwise resume from another checkpoint"
        ) from None
    if isinstance(state, tuple):         # written before the RNG state became a dict
        state = {"cpu": state[0], "cuda": state[1], "tracker": state[2]}
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states({k: v.clone() for k, v in state["tracker"].items()})


def _save(root: Path, step: int, *, model, optimizer, scheduler, extra: dict,
          keep_last: int) -> Path:
    final, tmp = root / f"step_{step:08d}", root / f"step_{step:08d}.tmp"
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    # LoRA: only the trainable tensors (adapter-only checkpoints, training/adapter_checkpoint).
    model_state = checkpoint_model_state(model, model_sharded_state(model))
    state = {"model": model_state,
             "optimizer": optimizer.sharded_state_dict(model_state, metadata=_optimizer_metadata()),
             "scheduler": scheduler.state_dict(), "step": step, "extra": extra,
             "world_size": dist.get_world_size() if dist.is_initialized() else 1}
    dist_checkpointing.save(state, str(tmp))
    torch.save(_rng_state(), tmp / f"rng_rank{rank}.pt")
    _barrier()
    write_checksums(tmp)      # collective; checksums.json is the last file written
    _barrier()
    if rank == 0:
        if final.exists():    # a step saved again after a relaunch: never rmtree what 'latest' names
            stale = root / f"step_{step:08d}.old"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)
        os.replace(tmp, final)
        pointer = root / "latest.tmp"
        pointer.write_text(f"{step}\n")
        os.replace(pointer, root / "latest")
        for old in [*sorted(root.glob("step_????????"))[:-keep_last], *root.glob("step_*.old")]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    _barrier()
    return final


def _own_adam_step_on_load() -> None:
    """Megatron-Core 0.16.1 fix for torch's own Adam (no Apex / TE FusedAdam), applied once.

    ``DistributedOptimizer.load_state_dict`` restores ``step`` from the saved param groups as one
    tensor object shared by every parameter's state; its ``fully_reshardable`` loader then hands
    ``_set_main_param_and_optimizer_states`` the saved tensors without ``step``, which fails on the
    missing key. And torch's foreach Adam increments each state's ``step`` in place, so a shared
    counter would advance once per parameter per step after a resume (wrong bias correction). The
    setter, called for every parameter this rank holds, now gives each state its own copy of the
    restored ``step`` and supplies it when the saved tensors lack it."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer._set_main_param_and_optimizer_states
    if getattr(original, "_owns_step", False):
        return

    def set_states(self, model_param, tensors):
        if not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            group, order = self.model_param_group_index_map[model_param]
            state = self.optimizer.state[self.optimizer.param_groups[group]["params"][order]]
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()
                tensors = {"step": state["step"], **tensors}
        return original(self, model_param, tensors)

    set_states._owns_step = True
    DistributedOptimizer._set_main_param_and_optimizer_states = set_states


def _allocate_distributed_optimizer_state(optimizer) -> None:
    """A fresh DistributedOptimizer has no Adam state (torch allocates it at the first step) and
    cannot build its loading template; Megatron's own loader allocates it with one zero-gradient
    step first. The weights that step touches are overwritten by the load that follows."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for leaf in getattr(optimizer, "chained_optimizers", [optimizer]):
        if isinstance(leaf, DistributedOptimizer) and not leaf.optimizer.state:
            leaf._init_optimizer_states_with_dummy_values()


def load_checkpoint(run_dir: str | Path, *, model, optimizer, scheduler) -> Optional[dict]:
    """Load ``latest`` into model/optimizer/scheduler; returns {"step", "extra"} or None."""
    step = latest_step(run_dir)
    if step is None:
        return None
    root = Path(run_dir) / "checkpoints"
    path = root / f"step_{step:08d}"
    try:
        if not path.is_dir():
            raise CheckpointCorruptError(f"{path}: named by {root / 'latest'} but missing")
        verify_checksums(path)
    except CheckpointCorruptError as err:
        raise CheckpointCorruptError(f"{err}\n{_offer(root, step)}") from None
    check_metadata(path)        # torch unpickles .metadata on load: refuse a crafted one first
    _own_adam_step_on_load()
    _allocate_distributed_optimizer_state(optimizer)
    model_state = checkpoint_model_state(model, model_sharded_state(model))
    template = {"model": model_state,
                "optimizer": optimizer.sharded_state_dict(model_state, is_loading=True,
                                                       metadata=_optimizer_metadata())}
    state = dist_checkpointing.load(template, str(path))
    for chunk, part in chunk_parts(model, state["model"]):
        load_chunk_state(chunk, part)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    rng_file = path / f"rng_rank{rank}.pt"
    if state["world_size"] == world and rng_file.exists():
        _restore_rng(rng_file)
    else:
        logger.warning("checkpoint written by %d ranks, now %d: RNG states not restored",
                       state["world_size"], world)
    logger.info("resumed from %s", path)
    return {"step": state["step"], "extra": state["extra"]}
