"""InfoNCE over DP=2 gloo ranks equals the loss of the concatenated batch in one process."""

from __future__ import annotations

from functools import partial

from megatron_hybridir.loss import info_nce
from tests.distributed.loss_parity import assert_dp2_equals_one_process


def test_dp2_loss_and_gradients_equal_one_process(tmp_path):
    assert_dp2_equals_one_process(partial(info_nce, scale=20.0, symmetric=True), tmp_path)
