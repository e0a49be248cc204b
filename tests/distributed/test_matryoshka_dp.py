"""Matryoshka InfoNCE over DP=2 gloo ranks (global in-batch and hard negatives gathered per prefix)
equals the loss and gradients of the concatenated batch in one process."""

from __future__ import annotations

from functools import partial

from megatron_hybridir.matryoshka import matryoshka_info_nce
from tests.distributed.loss_parity import assert_dp2_equals_one_process


def test_matryoshka_dp2_equals_one_process(tmp_path):
    loss = partial(matryoshka_info_nce, dims=[2, 4, "full"], weights=[0.5, 1.0, 1.0], scale=20.0,
                   symmetric=True)
    assert_dp2_equals_one_process(loss, tmp_path)
