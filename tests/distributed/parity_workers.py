"""Rank functions for the parallelism parity tests (spawned by tests/distributed/harness.py).

Each configuration loads the same initial weights (a Megatron distributed checkpoint written at
TP=1, re-sharded on load), runs one global batch through ``training.engine.forward_backward``, and
writes its loss and its reduced gradients (as a distributed checkpoint, so that any layout can be
read back at TP=1 and compared tensor by tensor).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from megatron.core import dist_checkpointing

from megatron_hybridir.checkpointing.model_state import model_sharded_state
from megatron_hybridir.config import DistillationConfig, LossConfig, ParallelConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.packing import pack_for_layout, split_by_tokens
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.config.presets import preset
from megatron_hybridir.runtime.distributed import initialize
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.gradcache import gradcache_forward_backward

LOSS = LossConfig(temperature=0.05, num_hard_negatives=1, symmetric=True)
# Distillation cases: the same loss plus a KL term on teacher scores carried by the batch.
DISTILL_LOSS = dataclasses.replace(LOSS, distillation=DistillationConfig(
    weight=1.0, kind="kl", temperature=0.1, teacher_temperature=2.0))
SEQ = 12


def model_config(**overrides):
    base = dict(num_layers=4, hidden_dropout=0.0, attention_dropout=0.0, pooling="mean",
                projection_dim=32)
    base.update(overrides)
    return preset("tiny", **base)


def global_batch(num_queries: int, *, teacher_scores: bool = False) -> Batch:
    batch = random_token_batch(num_queries=num_queries, num_negatives=LOSS.num_hard_negatives,
                               seq_length=SEQ, vocab_size=250,
                               generator=torch.Generator().manual_seed(2024))
    if teacher_scores:
        scores = torch.randn(num_queries, 1 + LOSS.num_hard_negatives,
                             generator=torch.Generator().manual_seed(5)) * 3
        batch = dataclasses.replace(batch, teacher_scores=scores)
    return batch


def micro_batches_for_rank(batch: Batch, *, dp_rank: int, dp_size: int,
                           num_micro: int) -> list[Batch]:
    b = batch.num_queries
    local = batch.select(range(dp_rank * b // dp_size, (dp_rank + 1) * b // dp_size))
    return local.split(local.num_queries // num_micro)


def save(chunks, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(model_sharded_state(chunks), str(path))


def run_config(launch, case: dict, work: str) -> None:
    """One parallel layout: load weights, one step, write loss + gradient checkpoint."""
    parallel = ParallelConfig(**case["parallel"])
    initialize(parallel, seed=7, launch=launch)
    chunks = build_model_chunks(model_config(**case.get("model", {})), parallel, loss=LOSS)
    work_dir = Path(work)
    weights = work_dir / "weights"
    if case.get("save_weights"):
        save(chunks, weights)
    else:
        state = dist_checkpointing.load(model_sharded_state(chunks), str(weights))
        if len(chunks) == 1:
            chunks[0].load_state_dict(state)
        else:
            for i, c in enumerate(chunks):
                c.load_state_dict(state[f"model{i}"])
    ddp = wrap_ddp(chunks)
    from megatron.core import parallel_state as ps

    loss = DISTILL_LOSS if case.get("distill") else LOSS
    batch = global_batch(case["global_batch"], teacher_scores=bool(case.get("distill")))
    micro = micro_batches_for_rank(batch, dp_rank=ps.get_data_parallel_rank(),
                                   dp_size=ps.get_data_parallel_world_size(),
                                   num_micro=case["num_micro"])
    budget = case.get("token_budget")
    if budget is not None:
        [local] = micro
        micro = split_by_tokens(local, max_tokens=budget)
        out_dir = work_dir / case["name"]
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"pairs_rank{launch.rank}.txt").write_text(
            " ".join(str(mb.num_queries) for mb in micro))
    if case.get("packing"):
        # A multiple of 3 leaves odd stream lengths, which sequence parallelism must round to 6.
        micro = pack_for_layout(micro, pad_to_multiple=3, parallel=parallel, token_budget=budget,
                                balance=bool(case.get("gradcache")))
    if case.get("gradcache"):
        outputs = gradcache_forward_backward(ddp, micro, loss=loss,
                                             check_replay=case.get("check_replay", False))
    else:
        outputs = forward_backward(ddp, micro, loss=loss)
    out_dir = work_dir / case["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if outputs:
        local_loss = torch.stack([o["loss"] for o in outputs]).mean()
        if case.get("distill"):   # the term really ran (a vacuous parity would pass too)
            assert all(o["distillation"] > 0 for o in outputs)
        torch.save({"loss": local_loss, "dp_rank": ps.get_data_parallel_rank(),
                    "tp_rank": ps.get_tensor_model_parallel_rank()},
                   out_dir / f"loss_rank{launch.rank}.pt")
    # Write the reduced gradients in place of the weights and save them resharding-aware.
    with torch.no_grad():
        for chunk, wrapped in zip(chunks, ddp):
            for param in chunk.parameters():
                param.copy_(param.main_grad)
    save(chunks, out_dir / "grads")


def read_back(launch, names: list[str], work: str, model: dict | None = None) -> None:
    """At TP=1 PP=1, load every gradient checkpoint into plain tensors."""
    initialize(ParallelConfig(), seed=7, launch=launch)
    chunk = build_model_chunks(model_config(**(model or {})), ParallelConfig(), loss=LOSS)[0]
    for name in names:
        state = dist_checkpointing.load(chunk.sharded_state_dict(), str(Path(work) / name / "grads"))
        torch.save({k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)},
                   Path(work) / name / "grads.pt")
