"""Packed micro-batches through Transformer Engine's THD attention and Megatron's THD RoPE (fused
and unfused) on a GPU: the same embeddings as the padded batch through TE's padding mask.

Skipped without CUDA and Transformer Engine; docs/gpu-results.md says when to run it. The CPU side
of the contract is ``tests/unit/model/test_packing_te_contract.py``.
"""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.data.packing import pack_batch
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model.layer_specs import transformer_engine_available

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and transformer_engine_available()),
                                reason="needs a CUDA GPU and Transformer Engine")

BERT = dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
            position_offset=2, type_vocab_size=2)


@pytest.mark.parametrize("rope_fusion", [False, True])
@pytest.mark.parametrize("family", ["llama_bidirectional", "llama_causal", "bert"])
@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
def test_te_thd_packed_embeddings_equal_padded(megatron_runtime, family, pooling, rope_fusion):
    from megatron_hybridir.config import ParallelConfig, PrecisionConfig
    from megatron_hybridir.config.presets import preset
    from megatron_hybridir.model.builder import build_model

    if family == "bert" and rope_fusion:
        pytest.skip("learned absolute positions: no RoPE")
    overrides = dict(BERT) if family == "bert" else {}
    if family == "llama_causal":
        overrides["attention"] = "causal"
    torch.manual_seed(0)
    model = build_model(preset("tiny", use_transformer_engine=True, pooling=pooling, **overrides),
                        ParallelConfig(), precision=PrecisionConfig(dtype="bf16")).eval()
    assert model.packed_attention == "thd"
    model.config.apply_rope_fusion = rope_fusion
    batch = random_token_batch(num_queries=4, num_negatives=1, seq_length=24, vocab_size=250,
                               generator=torch.Generator().manual_seed(1))
    packed = pack_batch(batch, multiple=16, length=256)  # with a long tail segment
    device = torch.device("cuda")
    batch, packed = batch.to(device), packed.to(device)
    with torch.no_grad():
        expected = model(batch.input_ids, batch.attention_mask).float()
        got = model(packed.input_ids, packed.attention_mask, cu_seqlens=packed.cu_seqlens).float()
    # bf16 kernels differ in accumulation order between the padded and THD layouts.
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert bool((cosine > 0.999).all()), cosine
