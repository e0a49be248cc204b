"""InfoNCE + distillation (KL on teacher scores carried by the batch) under TP=2, PP=2, DP=2 and
GradCache with PP=2 against one process: same weights, same data, same tolerances as
test_parallel_parity.py (the workers assert the distillation term is non-zero on every rank)."""

from __future__ import annotations

import pytest

from tests.distributed.harness import run_ranks
from tests.distributed.parity_workers import read_back, run_config
from tests.distributed.test_parallel_parity import GLOBAL_BATCH, _compare

CASES = {
    # name: (world size, parallel layout, micro-batches per DP rank, GradCache)
    "tp2": (2, dict(tensor_model_parallel_size=2), 2, False),
    "pp2": (2, dict(pipeline_model_parallel_size=2), 2, False),
    "dp2": (2, dict(), 1, False),
    "gc_pp2_m4": (2, dict(pipeline_model_parallel_size=2), 4, True),
}


@pytest.fixture(scope="module")
def distill_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("distill_parity")
    for micro in (1, 2):
        run_ranks(run_config, 1, dict(name=f"ref_m{micro}", parallel={}, global_batch=GLOBAL_BATCH,
                                      num_micro=micro, save_weights=micro == 1, distill=True),
                  str(work))
    for name, (world, layout, micro, gradcache) in CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                          num_micro=micro, gradcache=gradcache, distill=True),
                  str(work))
    run_ranks(read_back, 1, ["ref_m1", "ref_m2", *CASES], str(work))
    return work


@pytest.mark.parametrize("name", list(CASES))
def test_distillation_loss_and_gradients_match_single_process(distill_runs, name):
    world, layout, micro, gradcache = CASES[name]
    # GradCache is compared with the whole batch in one piece, plain micro-batching with the same
    # micro-batching in one process (its in-batch negatives span one micro-batch).
    _compare(distill_runs, name, "ref_m1" if gradcache else f"ref_m{micro}",
             grad_tol=1e-5 if gradcache else 1e-4)
