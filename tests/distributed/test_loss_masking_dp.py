"""Masked InfoNCE (planted duplicates across ranks and micro-batches) under DP=2 gloo and with
GradCache-style micro-batch concatenation equals the same loss of the whole batch in one process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F

from megatron_hybridir.config import LossConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.training.forward_step import contrastive_loss
from tests.distributed.harness import run_ranks

LOSS = LossConfig(temperature=0.05, num_hard_negatives=2, symmetric=True,
                  false_negative_margin=0.3)
B, K, D = 8, 2, 8


class _NoLearnedScale:
    def logit_scale(self):
        return None


def _global():
    g = torch.Generator().manual_seed(5)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    q, p, n = make(B, D), make(B, D), make(B, K, D)
    pos_ids = torch.arange(1000, 1000 + B)
    pos_ids[6] = pos_ids[1]                   # rank 0's item 1 and rank 1's item 6: one passage
    neg_ids = torch.arange(2000, 2000 + B * K).view(B, K)
    neg_ids[5, 1] = pos_ids[0]                # rank 1's negative copies rank 0's positive
    neg_ids[2, 0] = pos_ids[3]                # same rank, other micro-batch
    return q, p, n, pos_ids, neg_ids


def _ids_batch(pos_ids, neg_ids) -> Batch:
    """The loss reads only counts and content ids; the tokens are placeholders of the right rows."""
    rows = len(pos_ids) * (2 + K)
    return Batch(input_ids=torch.zeros(rows, 1, dtype=torch.long),
                 attention_mask=torch.ones(rows, 1, dtype=torch.bool), num_queries=len(pos_ids),
                 num_negatives=K, positive_ids=pos_ids, negative_ids=neg_ids.reshape(-1))


def _micro(rows, q, p, n, pos_ids, neg_ids, num_micro):
    """Embeddings in the engine's row layout + their batches, ``num_micro`` micro-batches."""
    out = []
    for part in torch.tensor_split(torch.tensor(rows), num_micro):
        emb = torch.cat([q[part], p[part], n[part].reshape(-1, D)])
        out.append((emb, _ids_batch(pos_ids[part], neg_ids[part])))
    return out


def _loss(micro, group):
    leaves = [e.clone().requires_grad_(True) for e, _ in micro]
    out = contrastive_loss(leaves, [b for _, b in micro], model=_NoLearnedScale(), loss=LOSS,
                           dp_group=group)
    out.loss.backward()
    return out, [leaf.grad for leaf in leaves]


def _dp_rank(launch, out_dir: str, num_micro: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                            rank=launch.rank, world_size=launch.world_size)
    rows = list(range(launch.rank * B // 2, (launch.rank + 1) * B // 2))
    out, grads = _loss(_micro(rows, *_global(), num_micro), dist.group.WORLD)
    torch.save({"loss": out.loss.detach(), "masked": out.masked, "grads": grads},
               Path(out_dir) / f"r{launch.rank}_m{num_micro}.pt")


def test_masked_loss_under_dp2_and_micro_batches_equals_one_process(tmp_path):
    for num_micro in (1, 2):                  # 2: the GradCache path (micro-batches concatenated)
        run_ranks(_dp_rank, 2, str(tmp_path), num_micro)
    whole, _ = _loss(_micro(list(range(B)), *_global(), 1), None)
    # The planted copies: queries 1 and 6 mask each other's positive, queries 0 and 3 a negative;
    # the margin masks more.
    ids_only = contrastive_loss(
        [e for e, _ in _micro(list(range(B)), *_global(), 1)], [b for _, b in _micro(
            list(range(B)), *_global(), 1)], model=_NoLearnedScale(), dp_group=None,
        loss=LossConfig(temperature=0.05, num_hard_negatives=K, symmetric=True))
    assert ids_only.masked.item() == 4 and whole.masked.item() > 4
    for num_micro in (1, 2):
        parts = [torch.load(tmp_path / f"r{r}_m{num_micro}.pt") for r in range(2)]
        torch.testing.assert_close((parts[0]["loss"] + parts[1]["loss"]) / 2, whole.loss.detach(),
                                   atol=1e-12, rtol=1e-12)
        assert parts[0]["masked"] + parts[1]["masked"] == whole.masked
    # Gradients: one process on the whole batch vs the DP ranks (averaged like DDP).
    q, p, n, pos_ids, neg_ids = _global()
    leaves = [t.clone().requires_grad_(True) for t in (q, p, n)]
    emb = torch.cat([leaves[0], leaves[1], leaves[2].reshape(-1, D)])
    out = contrastive_loss([emb], [_ids_batch(pos_ids, neg_ids)],
                           model=_NoLearnedScale(), loss=LOSS, dp_group=None)
    out.loss.backward()
    parts = [torch.load(tmp_path / f"r{r}_m2.pt") for r in range(2)]
    for rank in range(2):
        rows = torch.arange(rank * B // 2, (rank + 1) * B // 2)
        for m, part_rows in enumerate(torch.tensor_split(rows, 2)):
            g = parts[rank]["grads"][m] / 2
            b = len(part_rows)
            torch.testing.assert_close(g[:b], leaves[0].grad[part_rows], atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(g[b:2 * b], leaves[1].grad[part_rows], atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(g[2 * b:], leaves[2].grad[part_rows].reshape(-1, D),
                                       atol=1e-12, rtol=1e-10)
