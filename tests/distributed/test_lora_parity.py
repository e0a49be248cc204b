"""LoRA under TP=2 (with and without sequence parallelism), PP=2, DP=2 (distributed optimizer) and
GradCache against one process, for the Llama-style decoder and the post-LN encoder: loss within
1e-5, adapter and head gradients within 1e-4 relative (read back at TP=1 through the adapters'
sharded checkpoints, so the split of A and B is checked too); after optimizer steps the frozen base
is bit-identical and the optimizer holds exactly the adapters and the head."""

from __future__ import annotations

import json

import pytest
import torch

from tests.distributed.harness import run_ranks
from tests.distributed.lora_workers import read_back, run_lora
from tests.distributed.test_parallel_parity import GLOBAL_BATCH, _compare, _loss

ENCODER = dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
               position_offset=2, type_vocab_size=2, pooling="first", pooler=True,
               layernorm_epsilon=1e-12)
CASES = {
    # name: (world, layout, micro-batches per DP rank, extra)
    "lora_tp2": (2, dict(tensor_model_parallel_size=2), 2, {}),
    "lora_tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True), 2, {}),
    "lora_pp2": (2, dict(pipeline_model_parallel_size=2), 2, {}),
    "lora_pp2_vpp2": (2, dict(pipeline_model_parallel_size=2,
                              virtual_pipeline_model_parallel_size=2), 2, {}),
    "lora_dp2": (2, dict(), 1, {}),
    # Gradients are reduce-scattered into each rank's shard here: only the loss and the optimizer
    # records are compared.
    "lora_dp2_distopt": (2, dict(), 1, dict(distributed_optimizer=True)),
    "lora_gc_tp2": (2, dict(tensor_model_parallel_size=2), 2, dict(gradcache=True)),
}
ENCODER_CASES = {"lora_enc_tp2_sp": (2, dict(tensor_model_parallel_size=2, sequence_parallel=True), 1, {})}


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("lora_parity")
    enc = tmp_path_factory.mktemp("lora_encoder_parity")
    run_ranks(run_lora, 1, dict(name="ref_m1", parallel={}, global_batch=GLOBAL_BATCH, num_micro=1,
                                save_weights=True), str(work))
    run_ranks(run_lora, 1, dict(name="ref_m2", parallel={}, global_batch=GLOBAL_BATCH, num_micro=2),
              str(work))
    for name, (world, layout, micro, extra) in CASES.items():
        run_ranks(run_lora, world, dict(name=name, parallel=layout, global_batch=GLOBAL_BATCH,
                                        num_micro=micro, **extra), str(work))
    run_ranks(read_back, 1, ["ref_m1", "ref_m2", *CASES], str(work))
    run_ranks(run_lora, 1, dict(name="enc_ref", parallel={}, model=ENCODER, global_batch=GLOBAL_BATCH,
                                num_micro=1, save_weights=True), str(enc))
    for name, (world, layout, micro, extra) in ENCODER_CASES.items():
        run_ranks(run_lora, world, dict(name=name, parallel=layout, model=ENCODER,
                                        global_batch=GLOBAL_BATCH, num_micro=micro, **extra), str(enc))
    run_ranks(read_back, 1, ["enc_ref", *ENCODER_CASES], str(enc), ENCODER)
    return work, enc


def _reference(name: str) -> str:
    micro, extra = CASES[name][2], CASES[name][3]
    return "ref_m1" if micro == 1 or extra.get("gradcache") else "ref_m2"


@pytest.mark.parametrize("name", list(CASES))
def test_lora_loss_and_adapter_gradients_match_single_process(lora_runs, name):
    work, _ = lora_runs
    if CASES[name][3].get("distributed_optimizer"):
        assert abs(_loss(work, name) - _loss(work, _reference(name))) < 1e-5
        return
    _compare(work, name, _reference(name), grad_tol=1e-4)
    grads = torch.load(work / name / "grads.pt")
    # Both factors of every targeted linear, and the head's projection, got gradients.
    for target in ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"):
        for factor in ("lora_a", "lora_b"):
            key = f"decoder.layers.0.{'self_attention' if 'proj' in target or 'qkv' in target else 'mlp'}.{target}.{factor}"
            assert key in grads and grads[key].abs().sum() > 0, key
    assert set(grads) == {k for k in grads if "lora_" in k or k.startswith("head.")}


@pytest.mark.parametrize("name", list(ENCODER_CASES))
def test_lora_on_the_post_ln_encoder_matches_single_process(lora_runs, name):
    _, enc = lora_runs
    _compare(enc, name, "enc_ref", grad_tol=1e-4)


@pytest.mark.parametrize("name", ["ref_m1", *CASES])
def test_base_frozen_and_only_adapters_and_head_in_the_optimizer(lora_runs, name):
    work, _ = lora_runs
    for path in sorted((work / name).glob("steps_rank*.json")):
        # Names without the "<chunk>:" label that virtual pipeline stages add (lora_workers).
        record = {k: [n.rpartition(":")[2] for n in v]
                  for k, v in json.loads(path.read_text()).items()}
        assert record["trainable"], "nothing trainable"
        assert all("lora_" in n or n.startswith("head.") for n in record["trainable"])
        assert record["frozen"] and not set(record["moved"]) & set(record["frozen"])
        # The optimizer moved the adapters (non-vacuous) and holds exactly the trainable ones.
        assert any(n.endswith("lora_a") for n in record["moved"])
        assert set(record["held"]) <= set(record["trainable"])
        if "distopt" not in name:   # the distributed optimizer holds this DP rank's shard only
            assert record["held"] == record["trainable"]
