"""Model properties on one process: padding invariance, (bi)directionality, pooling, sizes."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.model.builder import count_parameters
from megatron_hybridir.config.presets import preset

POOLINGS = ["mean", "last", "first", "latent_attention"]


def _tokens(lengths, seq, vocab=250, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (len(lengths), seq), generator=g)
    mask = torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, 0), mask


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
def test_padding_does_not_change_embeddings(build_tiny, pooling, attention):
    model = build_tiny(pooling=pooling, attention=attention, latent_num_latents=16,
                       latent_num_heads=4, projection_dim=16)
    ids, mask = _tokens([5, 9, 3], seq=9)
    padded_ids = torch.cat([ids, torch.full((3, 7), 17)], dim=1)  # junk tokens in the padding
    padded_mask = torch.cat([mask, torch.zeros(3, 7, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = model(ids, mask)
        long = model(padded_ids, padded_mask)
    torch.testing.assert_close(long, short, atol=1e-5, rtol=1e-5)
    assert short.shape == (3, 16)
    torch.testing.assert_close(short.norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("attention,should_change", [("bidirectional", True), ("causal", False)])
def test_last_token_reaches_first_position_only_when_bidirectional(build_tiny, attention,
                                                                   should_change):
    model = build_tiny(attention=attention)
    ids, mask = _tokens([8], seq=8)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 250
    with torch.no_grad():
        first = model(ids, mask, return_hidden=True)[0, 0]
        first_changed = model(changed, mask, return_hidden=True)[0, 0]
    moved = (first - first_changed).abs().max().item()
    if should_change:
        assert moved > 1e-4
    else:
        assert moved == 0.0


def test_parameter_count_matches_formula(build_tiny):
    for overrides in [dict(), dict(projection_dim=16), dict(qk_layernorm=True, add_qkv_bias=True),
                      dict(pooling="latent_attention", latent_num_latents=8, latent_num_heads=4)]:
        model = build_tiny(**overrides)
        assert sum(p.numel() for p in model.parameters()) == count_parameters(
            preset("tiny", **overrides)), overrides


def test_no_lm_head_and_final_norm_present(build_tiny):
    model = build_tiny()
    names = [n for n, _ in model.named_parameters()]
    assert "decoder.final_layernorm.weight" in names
    assert not any("output_layer" in n for n in names)


def test_sequence_longer_than_position_limit_is_rejected(build_tiny):
    model = build_tiny(max_position_embeddings=8)
    ids, mask = _tokens([10], seq=10)
    with pytest.raises(ValueError, match="exceeds the model's position limit 8"):
        model(ids, mask)


def test_learnable_temperature_is_a_model_parameter(megatron_runtime):
    from megatron_hybridir.config import LossConfig, ParallelConfig
    from megatron_hybridir.model.builder import build_model

    model = build_model(preset("tiny"), ParallelConfig(),
                        loss=LossConfig(temperature=0.05, learnable_temperature=True))
    assert "head.log_scale" in dict(model.named_parameters())
    assert model.logit_scale().item() == pytest.approx(20.0, rel=1e-5)
