"""InfoNCE + distillation (KL and MarginMSE, with false-negative masking) over DP=2 gloo ranks
equals the loss of the concatenated batch in one process, loss and gradients."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.distributed as dist

from megatron_hybridir.config import LossConfig
from megatron_hybridir.config.schema import DistillationConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.training.forward_step import contrastive_loss
from tests.distributed.loss_parity import assert_dp2_equals_one_process

ROWS, K = 6, 2


class _NoLearnedScale:
    def logit_scale(self):
        return None


def _global_teacher_and_ids():
    teacher = torch.randn(ROWS, 1 + K, generator=torch.Generator().manual_seed(3)) * 4
    teacher[4, 2] = float("nan")                   # a filled-in negative on rank 1
    pos_ids = torch.arange(10, 10 + ROWS)
    neg_ids = torch.arange(50, 50 + ROWS * K).view(ROWS, K)
    neg_ids[1, 0] = pos_ids[1]                     # rank 0: a copy of the row's own positive
    neg_ids[5, 1] = pos_ids[0]                     # rank 1: a copy of rank 0's positive
    return teacher, pos_ids, neg_ids


def distilled_loss(q, p, n, *, loss: LossConfig, group=None):
    """Picklable: this rank's rows of the global teacher scores / ids (all of them alone)."""
    teacher, pos_ids, neg_ids = _global_teacher_and_ids()
    if group is not None:
        rows = slice(dist.get_rank(group) * q.size(0), (dist.get_rank(group) + 1) * q.size(0))
        teacher, pos_ids, neg_ids = teacher[rows], pos_ids[rows], neg_ids[rows]
    b = q.size(0)
    batch = Batch(input_ids=torch.zeros(b * (2 + K), 1, dtype=torch.long),
                  attention_mask=torch.ones(b * (2 + K), 1, dtype=torch.bool), num_queries=b,
                  num_negatives=K, positive_ids=pos_ids, negative_ids=neg_ids.reshape(-1),
                  teacher_scores=teacher)
    out = contrastive_loss([torch.cat([q, p, n.reshape(-1, n.size(-1))])], [batch],
                           model=_NoLearnedScale(), loss=loss, dp_group=group)
    assert out.distillation is not None and out.distillation.item() > 0
    return out


@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_dp2_distillation_equals_one_process(kind, tmp_path):
    loss = LossConfig(temperature=0.05, num_hard_negatives=K, symmetric=True,
                      false_negative_margin=0.5,
                      distillation=DistillationConfig(weight=0.5, kind=kind, temperature=0.1,
                                                      teacher_temperature=2.0))
    assert_dp2_equals_one_process(partial(distilled_loss, loss=loss), tmp_path)
