"""TP=2, PP=2 (with and without virtual stages) and DP=2 against one process, same weights and data.

Loss within 1e-5 (float32) and every gradient within 1e-4 relative, after reading the sharded
gradients back at TP=1 through Megatron's distributed checkpointing.
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed.harness import run_ranks
from tests.distributed.parity_workers import read_back, run_config

GLOBAL_BATCH = 4

CASES = {
    # name: (world size, parallel layout, micro-batches per DP rank)
    "tp2": (2, dict(tensor_model_parallel_size=2), 2),
    "tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True), 2),
    "pp2": (2, dict(pipeline_model_parallel_size=2), 2),
    "pp2_vpp2": (2, dict(pipeline_model_parallel_size=2,
                         virtual_pipeline_model_parallel_size=2), 2),
    "dp2": (2, dict(), 1),
}

# GradCache: in-batch negatives over the whole global batch whatever the micro-batching, so every
# case is compared with the single micro-batch reference (the whole-batch loss in one piece).
GRADCACHE_CASES = {
    "gc_m4": (1, dict(), 4),
    "gc_pp2_m4": (2, dict(pipeline_model_parallel_size=2), 4),
    "gc_dp2_m2": (2, dict(), 2),
    "gc_tp2_m4": (2, dict(tensor_model_parallel_size=2), 4),
}


# Packed micro-batches (data.packing): the rows of a micro-batch as one stream; the embeddings are
# unchanged, so each case equals the padded single-process reference of its micro-batching.
PACKED_CASES = {
    "pk_m2": (1, dict(), 2, False),
    "pk_tp2": (2, dict(tensor_model_parallel_size=2), 2, False),
    "pk_tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True), 2, False),
    "pk_pp2": (2, dict(pipeline_model_parallel_size=2), 2, False),
    "pk_dp2": (2, dict(), 1, False),
    "pk_gc_pp2_m4": (2, dict(pipeline_model_parallel_size=2), 4, True),
    # Virtual stages (the interleaved schedule) over packed streams. (GradCache with virtual
    # stages is refused by config validation: its gradients differ, packed or not.)
    "pk_pp2_vpp2": (2, dict(pipeline_model_parallel_size=2,
                            virtual_pipeline_model_parallel_size=2), 2, False),
}

# Token-budget micro-batches (data.micro_batch_tokens, with GradCache): whole pairs up to the budget
# per micro-batch, a count that differs between DP ranks; the whole-batch loss and gradient stay.
TOKEN_BUDGET = 40
BUDGET_CASES = {
    "tb_gc_m1": (1, dict()),
    "tb_gc_dp2": (2, dict()),
    "tb_gc_pp2": (2, dict(pipeline_model_parallel_size=2)),
    "tb_gc_tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True)),
}


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    # References: one process, same micro-batching as the parallel run it is compared with.
    for micro in (1, 2):
        run_ranks(run_config, 1, dict(name=f"ref_m{micro}", parallel={}, global_batch=GLOBAL_BATCH,
                                      num_micro=micro, save_weights=micro == 1), str(work))
    for name, (world, layout, micro) in CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                          num_micro=micro), str(work))
    for name, (world, layout, micro) in GRADCACHE_CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                          num_micro=micro, gradcache=True), str(work))
    # Dropout on: pass 2 must replay pass 1's masks (check_replay raises otherwise).
    run_ranks(run_config, 2, dict(name="gc_dropout_pp2", parallel=dict(pipeline_model_parallel_size=2),
                                  model=dict(hidden_dropout=0.1, attention_dropout=0.1),
                                  global_batch=GLOBAL_BATCH, num_micro=4, gradcache=True,
                                  check_replay=True), str(work))
    for name, (world, layout, micro, gradcache) in PACKED_CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                          num_micro=micro, gradcache=gradcache, packing=True),
                  str(work))
    for name, (world, layout) in BUDGET_CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                          num_micro=1, gradcache=True, packing=True,
                                          token_budget=TOKEN_BUDGET), str(work))
    names = ["ref_m1", "ref_m2", *CASES, *GRADCACHE_CASES, *PACKED_CASES, *BUDGET_CASES]
    run_ranks(read_back, 1, names, str(work))
    return work


def _loss(work, name) -> float:
    records = [torch.load(p) for p in sorted((work / name).glob("loss_rank*.pt"))]
    per_dp = {r["dp_rank"]: r["loss"] for r in records}  # TP ranks hold identical losses
    return float(torch.stack(list(per_dp.values())).mean())


def _compare(work, name: str, ref: str, *, grad_tol: float) -> None:
    assert abs(_loss(work, name) - _loss(work, ref)) < 1e-5
    ref_grads = torch.load(work / ref / "grads.pt")
    grads = torch.load(work / name / "grads.pt")
    assert set(grads) == set(ref_grads)
    for key, expected in ref_grads.items():
        got = grads[key]
        scale = expected.abs().max().clamp_min(1e-8)
        rel = float((got - expected).abs().max() / scale)
        assert rel < grad_tol, f"{name}: gradient of {key} differs (max rel {rel:.2e})"
    # Guard against a vacuous pass: the reference gradients are not all zero.
    assert any(g.abs().sum() > 0 for g in ref_grads.values())


@pytest.mark.parametrize("name", list(CASES))
def test_loss_and_gradients_match_single_process(parity_runs, name):
    _compare(parity_runs, name, f"ref_m{CASES[name][2]}", grad_tol=1e-4)


@pytest.mark.parametrize("name", list(GRADCACHE_CASES))
def test_gradcache_equals_the_whole_batch_gradient(parity_runs, name):
    _compare(parity_runs, name, "ref_m1", grad_tol=1e-5)


@pytest.mark.parametrize("name", list(PACKED_CASES))
def test_packed_micro_batches_match_the_padded_reference(parity_runs, name):
    _, _, micro, gradcache = PACKED_CASES[name]
    _compare(parity_runs, name, "ref_m1" if gradcache else f"ref_m{micro}",
             grad_tol=1e-5 if gradcache else 1e-4)


@pytest.mark.parametrize("name", list(BUDGET_CASES))
def test_token_budget_micro_batches_match_the_whole_batch(parity_runs, name):
    _compare(parity_runs, name, "ref_m1", grad_tol=1e-5)


def test_token_budget_splits_unevenly(parity_runs):
    # The budget really cuts the batch: several micro-batches of varying pair counts in one run,
    # and DP ranks that disagree on the count (so the equality above covers that case).
    single = (parity_runs / "tb_gc_m1" / "pairs_rank0.txt").read_text().split()
    assert len(single) > 1 and sum(map(int, single)) == GLOBAL_BATCH
    per_rank = [(parity_runs / "tb_gc_dp2" / f"pairs_rank{r}.txt").read_text().split()
                for r in (0, 1)]
    assert sum(int(n) for counts in per_rank for n in counts) == GLOBAL_BATCH
    assert len(per_rank[0]) != len(per_rank[1]), per_rank


def test_gradcache_micro_batching_changes_nothing_but_plain_micro_batching_does(parity_runs):
    # Without GradCache, 4 micro-batches see fewer negatives: the loss really differs, so the
    # GradCache equality above is not an accident of the data.
    assert abs(_loss(parity_runs, "ref_m2") - _loss(parity_runs, "ref_m1")) > 1e-3
    # The dropout run finished (check_replay raises inside the rank otherwise) with a finite loss.
    assert torch.isfinite(torch.tensor(_loss(parity_runs, "gc_dropout_pp2")))
