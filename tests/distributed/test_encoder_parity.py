"""The BERT-style (post-LayerNorm) encoder at TP=2 with sequence parallelism and at PP=2 against one
process: same weights and data, loss within 1e-5 and every gradient within 1e-4 relative (the
LayerNorm weights and biases of the embedding and of every layer included)."""

from __future__ import annotations

import pytest

from tests.distributed.harness import run_ranks
from tests.distributed.parity_workers import read_back, run_config
from tests.distributed.test_parallel_parity import GLOBAL_BATCH, _compare

ENCODER = dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
               position_offset=2, type_vocab_size=2, pooling="first", pooler=True,
               layernorm_epsilon=1e-12)
CASES = {"enc_tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True)),
         "enc_pp2": (2, dict(pipeline_model_parallel_size=2))}
# Packed streams: learned absolute positions restart at each row, token types stay 0.
PACKED = {"enc_pk_tp2_sp": CASES["enc_tp2_sp"], "enc_pk_pp2": CASES["enc_pp2"]}


@pytest.fixture(scope="module")
def encoder_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("encoder_parity")
    run_ranks(run_config, 1, dict(name="enc_ref", parallel={}, model=ENCODER, global_batch=GLOBAL_BATCH,
                                  num_micro=1, save_weights=True), str(work))
    for name, (world, layout) in CASES.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, model=ENCODER,
                                          global_batch=GLOBAL_BATCH, num_micro=1), str(work))
    for name, (world, layout) in PACKED.items():
        run_ranks(run_config, world, dict(name=name, parallel=layout, model=ENCODER, packing=True,
                                          global_batch=GLOBAL_BATCH, num_micro=1), str(work))
    run_ranks(read_back, 1, ["enc_ref", *CASES, *PACKED], str(work), ENCODER)
    return work


@pytest.mark.parametrize("name", [*CASES, *PACKED])
def test_encoder_loss_and_gradients_match_single_process(encoder_runs, name):
    _compare(encoder_runs, name, "enc_ref", grad_tol=1e-4)
