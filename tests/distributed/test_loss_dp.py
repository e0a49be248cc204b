"""InfoNCE over DP=2 gloo ranks equals the loss of the concatenated batch in one process."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from megatron_hybridir.loss import info_nce
from tests.distributed.harness import run_ranks


def _global_embeddings():
    g = torch.Generator().manual_seed(11)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    return make(6, 8), make(6, 8), make(6, 2, 8)


def _dp_rank(launch, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                            rank=launch.rank, world_size=launch.world_size)
    q, p, n = _global_embeddings()
    rows = slice(launch.rank * 3, launch.rank * 3 + 3)
    leaves = [t[rows].clone().requires_grad_(True) for t in (q, p, n)]
    out_ = info_nce(*leaves, scale=20.0, group=dist.group.WORLD, symmetric=True)
    out_.loss.backward()
    # DDP averages gradients over ranks; do the same to compare with one process.
    grads = [leaf.grad / launch.world_size for leaf in leaves]
    torch.save({"loss": out_.loss.detach(), "grads": grads}, Path(out) / f"r{launch.rank}.pt")


def test_dp2_loss_and_gradients_equal_one_process(tmp_path):
    run_ranks(_dp_rank, 2, str(tmp_path))
    parts = [torch.load(tmp_path / f"r{r}.pt") for r in range(2)]
    q, p, n = (t.clone().requires_grad_(True) for t in _global_embeddings())
    whole = info_nce(q, p, n, scale=20.0, symmetric=True)
    whole.loss.backward()
    mean_loss = (parts[0]["loss"] + parts[1]["loss"]) / 2
    torch.testing.assert_close(mean_loss, whole.loss.detach(), atol=1e-12, rtol=1e-12)
    for i, full in enumerate((q.grad, p.grad, n.grad)):
        torch.testing.assert_close(torch.cat([parts[0]["grads"][i], parts[1]["grads"][i]]), full,
                                   atol=1e-12, rtol=1e-10)
