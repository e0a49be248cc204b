"""Packed micro-batches (``data.packing``) on one process: the same embeddings, losses and gradients
as the padded batch, for every family, pooling type and attention direction."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.config import LossConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.packing import pack_batch, packing_multiple
from megatron_hybridir.data.synthetic import random_token_batch
from megatron_hybridir.model import packing
from megatron_hybridir.training.forward_step import contrastive_loss, embed

POOLINGS = ["mean", "last", "first", "latent_attention"]
BERT = dict(layer_kind="bert", num_query_groups=None, max_position_embeddings=64,
            position_offset=2, type_vocab_size=2, pooler=True, layernorm_epsilon=1e-12)
FAMILIES = {"llama_bidirectional": dict(), "llama_causal": dict(attention="causal"),
            "bert": BERT}


def _batch(seed=0, num_queries=3, num_negatives=1, seq=12) -> Batch:
    return random_token_batch(num_queries=num_queries, num_negatives=num_negatives,
                              seq_length=seq, vocab_size=250,
                              generator=torch.Generator().manual_seed(seed))


def _build(build_tiny, family, pooling, **extra):
    return build_tiny(**FAMILIES[family], pooling=pooling, latent_num_latents=16,
                      latent_num_heads=4, projection_dim=16, **extra)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("length", [None, 128])  # tight, and with a long padded tail
def test_packed_embeddings_equal_padded(build_tiny, family, pooling, length):
    model = _build(build_tiny, family, pooling)
    batch = _batch()
    packed = pack_batch(batch, length=length)
    assert packed.input_ids.shape[1] == (length or 64)  # 60 real tokens rounded up to 8
    with torch.no_grad():
        expected = model(batch.input_ids, batch.attention_mask)
        got = embed(model, packed)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rows_do_not_see_each_other_and_positions_restart(build_tiny, family):
    """Negative controls: with the whole stream as one segment (attention across rows), or
    (learned absolute positions) with positions running on across rows, the packed embeddings
    differ — so the equality above tests both. RoPE scores depend only on position differences
    inside a row, so a per-row offset changes nothing there (Megatron's THD RoPE relies on the
    same)."""
    model = _build(build_tiny, family, "mean")
    batch = _batch()
    packed = pack_batch(batch)
    with torch.no_grad():
        expected = model(batch.input_ids, batch.attention_mask)
    real_bounds, real_positions = packing.segment_bounds, packing.positions_in_rows
    try:
        packing.segment_bounds = lambda cu, total: torch.tensor([0, total], dtype=torch.int32)
        with torch.no_grad():
            leaked = embed(model, packed)
        packing.segment_bounds = real_bounds
        packing.positions_in_rows = lambda cu, total: torch.arange(total) % 50
        with torch.no_grad():
            shifted = embed(model, packed)
    finally:
        packing.segment_bounds, packing.positions_in_rows = real_bounds, real_positions
    assert (leaked - expected).abs().max() > 1e-4
    if family == "bert":
        assert (shifted - expected).abs().max() > 1e-4
    else:
        torch.testing.assert_close(shifted, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_packed_loss_and_gradients_equal_padded(build_tiny, family):
    model = _build(build_tiny, family, "mean")
    batch = _batch(num_queries=4)
    loss_config = LossConfig(temperature=0.05, num_hard_negatives=1, symmetric=True)

    def loss_and_grads(b):
        model.zero_grad()
        out = contrastive_loss([embed(model, b)], [b], model=model, loss=loss_config,
                               dp_group=None)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                   if p.grad is not None}

    loss, grads = loss_and_grads(batch)
    packed_loss, packed_grads = loss_and_grads(pack_batch(batch, length=96))
    torch.testing.assert_close(packed_loss, loss, atol=1e-5, rtol=0)
    assert set(packed_grads) == set(grads)
    for name, g in grads.items():
        torch.testing.assert_close(packed_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_pack_batch_layout_and_errors():
    batch = _batch()
    packed = pack_batch(batch, multiple=16)
    lengths = batch.attention_mask.sum(1)
    assert packed.cu_seqlens.tolist() == [0, *torch.cumsum(lengths, 0).tolist()]
    assert packed.input_ids.shape == (1, 64) and int(packed.attention_mask.sum()) == 60
    row = 4
    start, end = packed.cu_seqlens[row:row + 2].tolist()
    assert packed.input_ids[0, start:end].tolist() == batch.input_ids[row, :end - start].tolist()
    with pytest.raises(ValueError, match="60 real tokens do not fit in length 32"):
        pack_batch(batch, length=32)
    with pytest.raises(ValueError, match="already packed"):
        pack_batch(packed)
    with pytest.raises(ValueError, match="select pairs before packing"):
        packed.select([0])
    empty = Batch(input_ids=batch.input_ids, attention_mask=batch.attention_mask.clone(),
                  num_queries=3, num_negatives=1)
    empty.attention_mask[2] = False
    with pytest.raises(ValueError, match=r"rows \[2\] have no real token"):
        pack_batch(empty)


def test_packed_batch_validation():
    ids = torch.ones(1, 16, dtype=torch.long)
    mask = torch.ones(1, 16, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected 4 offsets"):
        Batch(input_ids=ids, attention_mask=mask, num_queries=1, num_negatives=1,
              cu_seqlens=torch.tensor([0, 8, 16], dtype=torch.int32))
    with pytest.raises(ValueError, match="increasing offsets from 0 to at most T=16"):
        Batch(input_ids=ids, attention_mask=mask, num_queries=1, num_negatives=1,
              cu_seqlens=torch.tensor([0, 8, 8, 16], dtype=torch.int32))
    with pytest.raises(ValueError, match="one stream"):
        Batch(input_ids=ids.view(2, 8), attention_mask=mask.view(2, 8), num_queries=1,
              num_negatives=0, cu_seqlens=torch.tensor([0, 4, 8], dtype=torch.int32))


def test_packing_multiple_covers_sequence_parallel():
    assert packing_multiple(pad_to_multiple=8, tensor_parallel=2, sequence_parallel=False) == 8
    assert packing_multiple(pad_to_multiple=8, tensor_parallel=3, sequence_parallel=True) == 24
    assert packing_multiple(pad_to_multiple=1, tensor_parallel=2, sequence_parallel=True) == 2


def test_unpack_rows_restores_row_order():
    # The loss reads embeddings in batch row order, which unpack_rows restores from cu_seqlens.
    hidden = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)  # [T=10, h=2]
    rows, mask = packing.unpack_rows(hidden, torch.tensor([0, 3, 4, 9], dtype=torch.int32))
    assert mask.sum(1).tolist() == [3, 1, 5]
    assert rows[2, :5, 0].tolist() == [4, 5, 6, 7, 8] and rows[1, 0, 0] == 3
