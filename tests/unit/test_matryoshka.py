"""Matryoshka loss == the weighted sum of independent InfoNCE losses on truncated, renormalised
embeddings (a reference written here with plain torch), with hard negatives and the symmetric
term; config validation names the field."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.config import ConfigError, load_config
from megatron_hybridir.matryoshka import matryoshka_info_nce


def _reference_info_nce(q, p, n, *, scale, symmetric):
    """InfoNCE over [positives; hard negatives] with in-batch negatives, one process."""
    candidates = torch.cat([p, n.reshape(-1, n.size(-1))]) if n is not None else p
    labels = torch.arange(q.size(0))
    loss = F.cross_entropy(scale * q @ candidates.T, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(scale * p @ q.T, labels))
    return loss


def _embeddings(d=32, b=5, k=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    return make(b, d), make(b, d), make(b, k, d)


@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_is_the_weighted_sum_of_truncated_renormalised_info_nce(symmetric):
    q, p, n = (t.requires_grad_(True) for t in _embeddings())
    dims, weights = [4, 8, 16, "full"], [0.5, 1.0, 2.0, 1.5]
    out = matryoshka_info_nce(q, p, n, dims=dims, weights=weights, scale=20.0, symmetric=symmetric)
    reference = sum(w * _reference_info_nce(F.normalize(q[:, :d], dim=-1),
                                            F.normalize(p[:, :d], dim=-1),
                                            F.normalize(n[..., :d], dim=-1),
                                            scale=20.0, symmetric=symmetric)
                    for d, w in zip([4, 8, 16, 32], weights))
    torch.testing.assert_close(out.loss, reference, atol=1e-12, rtol=1e-12)
    # Gradients agree too (the loss is what trains, not just what is logged).
    g_ours = torch.autograd.grad(out.loss, (q, p, n), retain_graph=True)
    g_ref = torch.autograd.grad(reference, (q, p, n))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    # And it is not the plain full-dimension loss (the prefixes matter).
    assert abs(out.loss.item() - 1.5 * _reference_info_nce(q, p, n, scale=20.0,
                                                          symmetric=symmetric).item()) > 1e-3


def test_default_weights_are_one_and_a_prefix_larger_than_the_embedding_fails():
    q, p, n = _embeddings()
    out = matryoshka_info_nce(q, p, None, dims=[8, 32], scale=10.0)
    ref = sum(_reference_info_nce(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), None,
                                  scale=10.0, symmetric=False) for d in (8, 32))
    torch.testing.assert_close(out.loss, ref)
    with pytest.raises(ValueError, match="do not fit embeddings of size 32"):
        matryoshka_info_nce(q, p, n, dims=[8, 64], scale=10.0)


@pytest.mark.parametrize("override, message", [
    ("loss.matryoshka_dims=[64, 32]", "loss.matryoshka_dims: must be strictly increasing"),
    ("loss.matryoshka_dims=[16, 128]", "loss.matryoshka_dims[1]: expected an integer in [1, 64]"),
    ("loss.matryoshka_dims=[16, half]", "loss.matryoshka_dims[1]"),
    ("loss.matryoshka_weights=[1.0]", "loss.matryoshka_weights: needs loss.matryoshka_dims"),
])
def test_config_validation_names_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.preset=tiny", override])
    assert message in str(err.value)


def test_config_accepts_full_and_checks_weight_count():
    config = load_config(None, ["model.preset=tiny", "loss.matryoshka_dims=[16, 32, full]",
                                "loss.matryoshka_weights=[1, 1, 2]"])
    assert config.loss.matryoshka_dims == [16, 32, "full"]
    with pytest.raises(ConfigError, match="3 dimensions"):
        load_config(None, ["model.preset=tiny", "loss.matryoshka_dims=[16, 32, full]",
                           "loss.matryoshka_weights=[1, 1]"])
