"""Matryoshka InfoNCE over DP=2 gloo ranks (global in-batch and hard negatives gathered per prefix)
equals the loss and gradients of the concatenated batch in one process."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from megatron_hybridir.matryoshka import matryoshka_info_nce
from tests.distributed.harness import run_ranks
from tests.distributed.test_loss_dp import _global_embeddings

DIMS, WEIGHTS = [2, 4, "full"], [0.5, 1.0, 1.0]


def _dp_rank(launch, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                            rank=launch.rank, world_size=launch.world_size)
    q, p, n = _global_embeddings()
    rows = slice(launch.rank * 3, launch.rank * 3 + 3)
    leaves = [t[rows].clone().requires_grad_(True) for t in (q, p, n)]
    result = matryoshka_info_nce(*leaves, dims=DIMS, weights=WEIGHTS, scale=20.0,
                                 group=dist.group.WORLD, symmetric=True)
    result.loss.backward()
    grads = [leaf.grad / launch.world_size for leaf in leaves]   # DDP's average
    torch.save({"loss": result.loss.detach(), "grads": grads}, Path(out) / f"r{launch.rank}.pt")


def test_matryoshka_dp2_equals_one_process(tmp_path):
    run_ranks(_dp_rank, 2, str(tmp_path))
    parts = [torch.load(tmp_path / f"r{r}.pt") for r in range(2)]
    q, p, n = (t.clone().requires_grad_(True) for t in _global_embeddings())
    whole = matryoshka_info_nce(q, p, n, dims=DIMS, weights=WEIGHTS, scale=20.0, symmetric=True)
    whole.loss.backward()
    torch.testing.assert_close((parts[0]["loss"] + parts[1]["loss"]) / 2, whole.loss.detach(),
                               atol=1e-12, rtol=1e-12)
    for i, full in enumerate((q.grad, p.grad, n.grad)):
        torch.testing.assert_close(torch.cat([parts[0]["grads"][i], parts[1]["grads"][i]]), full,
                                   atol=1e-12, rtol=1e-10)
