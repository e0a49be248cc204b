"""Shared body of the DP loss-parity tests: a loss over DP=2 gloo ranks (global negatives
gathered) against the same loss on the concatenated batch in one process.

Why it exists: InfoNCE and its Matryoshka sum must both equal their one-process value, loss and
gradients; the ranks' body and the comparison are the same for every loss, only the loss differs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.distributed.harness import run_ranks


def global_embeddings():
    """Six rows of queries, positives and two hard negatives each, unit-norm, float64."""
    g = torch.Generator().manual_seed(11)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    return make(6, 8), make(6, 8), make(6, 2, 8)


def _dp_rank(launch, out: str, loss_fn) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                            rank=launch.rank, world_size=launch.world_size)
    q, p, n = global_embeddings()
    rows = slice(launch.rank * 3, launch.rank * 3 + 3)
    leaves = [t[rows].clone().requires_grad_(True) for t in (q, p, n)]
    loss = loss_fn(*leaves, group=dist.group.WORLD).loss
    loss.backward()
    # DDP averages gradients over ranks; do the same to compare with one process.
    grads = [leaf.grad / launch.world_size for leaf in leaves]
    torch.save({"loss": loss.detach(), "grads": grads}, Path(out) / f"r{launch.rank}.pt")


def assert_dp2_equals_one_process(loss_fn: partial, tmp_path: Path) -> None:
    """``loss_fn(q, p, n, group=...)`` (a picklable partial) on DP=2 == on one process."""
    run_ranks(_dp_rank, 2, str(tmp_path), loss_fn)
    parts = [torch.load(tmp_path / f"r{r}.pt") for r in range(2)]
    q, p, n = (t.clone().requires_grad_(True) for t in global_embeddings())
    whole = loss_fn(q, p, n)
    whole.loss.backward()
    torch.testing.assert_close((parts[0]["loss"] + parts[1]["loss"]) / 2, whole.loss.detach(),
                               atol=1e-12, rtol=1e-12)
    for i, full in enumerate((q.grad, p.grad, n.grad)):
        torch.testing.assert_close(torch.cat([parts[0]["grads"][i], parts[1]["grads"][i]]), full,
                                   atol=1e-12, rtol=1e-10)
