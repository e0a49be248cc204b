"""Rank functions for the LoRA parity tests (spawned by tests/distributed/harness.py).

Like ``parity_workers``: every layout loads the same weights (base and adapters, written at TP=1 by
the reference and resharded on load), runs one global batch, and writes its loss and the adapters'
reduced gradients as a distributed checkpoint read back at TP=1. Then it takes two optimizer steps
and records which parameters the optimizer holds and whether the frozen base moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from megatron.core import dist_checkpointing
from megatron.core import parallel_state as ps
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

from megatron_hybridir.checkpointing.model_state import model_sharded_state
from megatron_hybridir.config import LoraConfig, ParallelConfig
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import initialize
from megatron_hybridir.training.adapter_checkpoint import trainable_sharded_state
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.gradcache import gradcache_forward_backward
from tests.distributed.parity_workers import LOSS, global_batch, micro_batches_for_rank, model_config

LORA = LoraConfig(rank=4, alpha=8.0, train_head=True)


def lora_model(**overrides):
    return model_config(lora=LORA, **overrides)


def named_parameters(chunks) -> dict:
    """Parameters by name; with virtual pipeline stages, chunk-local names repeat across chunks
    (each chunk has a ``decoder.layers.0``), so they are labelled ``<chunk>:<name>``."""
    if len(chunks) == 1:
        return dict(chunks[0].named_parameters())
    return {f"{i}:{n}": p for i, c in enumerate(chunks) for n, p in c.named_parameters()}


def held_by_optimizer(optimizer, chunks) -> list[str]:
    """Names of the model parameters the (possibly distributed) optimizer updates."""
    names = {id(p): n for n, p in named_parameters(chunks).items()}
    held = set()
    for leaf in getattr(optimizer, "chained_optimizers", [optimizer]):
        if hasattr(leaf, "model_param_group_index_map"):       # DistributedOptimizer
            held |= {names[id(p)] for p in leaf.model_param_group_index_map}
        else:
            held |= {names[id(p)] for g in leaf.optimizer.param_groups for p in g["params"]}
    return sorted(held)


def _load_or_save_weights(chunks, work: Path, save: bool) -> None:
    weights = work / "weights"
    if save:
        gen = torch.Generator().manual_seed(11)
        with torch.no_grad():
            for chunk in chunks:
                for name, p in chunk.named_parameters():
                    if name.endswith("lora_b"):   # B = 0 would leave A without gradient
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        weights.mkdir(parents=True, exist_ok=True)
        dist_checkpointing.save(model_sharded_state(chunks), str(weights))
        return
    state = dist_checkpointing.load(model_sharded_state(chunks), str(weights))
    for i, chunk in enumerate(chunks):
        chunk.load_state_dict(state if len(chunks) == 1 else state[f"model{i}"])


def run_lora(launch, case: dict, work: str) -> None:
    parallel = ParallelConfig(**case["parallel"])
    initialize(parallel, seed=7, launch=launch)
    chunks = build_model_chunks(lora_model(**case.get("model", {})), parallel, loss=LOSS)
    work_dir, out_dir = Path(work), Path(work) / case["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    _load_or_save_weights(chunks, work_dir, case.get("save_weights", False))
    dist_opt = case.get("distributed_optimizer", False)
    ddp = wrap_ddp(chunks, use_distributed_optimizer=dist_opt)
    optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=1e-2, clip_grad=1.0, use_distributed_optimizer=dist_opt), ddp)
    batch = global_batch(case["global_batch"])
    micro = micro_batches_for_rank(batch, dp_rank=ps.get_data_parallel_rank(),
                                   dp_size=ps.get_data_parallel_world_size(),
                                   num_micro=case["num_micro"])
    step = gradcache_forward_backward if case.get("gradcache") else forward_backward
    outputs = step(ddp, micro, loss=LOSS)
    if outputs:
        torch.save({"loss": torch.stack([o["loss"] for o in outputs]).mean(),
                    "dp_rank": ps.get_data_parallel_rank()}, out_dir / f"loss_rank{launch.rank}.pt")
    params = named_parameters(chunks)
    before = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():                      # gradients in place of the trainable weights
        for p in params.values():
            if p.requires_grad:
                p.copy_(p.main_grad)
    grads = out_dir / "grads"
    grads.mkdir(exist_ok=True)
    dist_checkpointing.save(trainable_sharded_state(model_sharded_state(chunks)), str(grads))
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(before[n])
    for i in range(2):
        if i:
            step(ddp, micro, loss=LOSS)
        optimizer.step()
    moved = sorted(n for n, p in params.items() if not torch.equal(p, before[n]))
    trainable = sorted(n for n, p in params.items() if p.requires_grad)
    (out_dir / f"steps_rank{launch.rank}.json").write_text(json.dumps(
        {"moved": moved, "trainable": trainable, "held": held_by_optimizer(optimizer, chunks),
         "frozen": sorted(n for n, p in params.items() if not p.requires_grad)}))


def read_back(launch, names: list[str], work: str, model: dict | None = None) -> None:
    """At TP=1 PP=1, read every adapter-gradient checkpoint into plain tensors."""
    initialize(ParallelConfig(), seed=7, launch=launch)
    chunk = build_model_chunks(lora_model(**(model or {})), ParallelConfig(), loss=LOSS)[0]
    template = trainable_sharded_state(chunk.sharded_state_dict())
    for name in names:
        state = dist_checkpointing.load(template, str(Path(work) / name / "grads"))
        torch.save({k: v.clone() for k, v in state.items()}, Path(work) / name / "grads.pt")
        template = trainable_sharded_state(chunk.sharded_state_dict())
