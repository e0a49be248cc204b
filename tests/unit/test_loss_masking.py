"""False-negative masking in InfoNCE: copies of a query's positive get zero probability mass, the
query's own positive column never does, and without duplicates the loss is unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.loss import info_nce


def _embeddings(b=5, k=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    return make(b, d), make(b, d), make(b, k, d)


def reference_terms(q, p, n, scale, drop):
    """Per-query loop InfoNCE where query i's softmax runs over candidates not in ``drop[i]``."""
    candidates = [p[j] for j in range(q.size(0))] + [n[j, m] for j in range(n.size(0))
                                                      for m in range(n.size(1))]
    terms = []
    for i in range(q.size(0)):
        cols = [c for c in range(len(candidates)) if c not in drop.get(i, set())]
        scores = torch.stack([scale * torch.dot(q[i], candidates[c]) for c in cols])
        terms.append(-(scores[cols.index(i)] - torch.logsumexp(scores, dim=0)))
    return terms


def reference_masked(q, p, n, scale, drop):
    return sum(reference_terms(q, p, n, scale, drop)) / q.size(0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_distinct_ids_leave_the_loss_unchanged(symmetric):
    q, p, n = _embeddings()
    plain = info_nce(q, p, n, scale=20.0, symmetric=symmetric)
    ids = torch.arange(100, 105)
    masked = info_nce(q, p, n, scale=20.0, symmetric=symmetric, positive_ids=ids,
                      negative_ids=torch.arange(200, 210).view(5, 2))
    assert abs(masked.loss.item() - plain.loss.item()) < 1e-7
    assert torch.equal(masked.loss, plain.loss) and masked.masked.item() == 0


def test_planted_duplicates_get_zero_probability_mass():
    q, p, n = _embeddings()
    pos_ids = torch.tensor([7, 7, 3, 4, 5])                 # items 0 and 1 share a positive text
    neg_ids = torch.tensor([[11, 12], [13, 14], [15, 16], [3, 18], [19, 20]])  # item 3's first
    q_, p_, n_ = (t.clone().requires_grad_(True) for t in (q, p, n))   # negative copies item 2's
    out = info_nce(q_, p_, n_, scale=20.0, positive_ids=pos_ids, negative_ids=neg_ids)
    # Query 0 loses column 1, query 1 loses column 0 (never their own); query 2 loses the
    # negative column 5 + 3*2 + 0 = 11 that copies its positive.
    drop = {0: {1}, 1: {0}, 2: {11}}
    torch.testing.assert_close(out.loss, reference_masked(q, p, n, 20.0, drop), rtol=0, atol=1e-12)
    assert out.masked.item() == 3
    # Zero mass: the masked candidate's gradient comes from the other queries' terms only.
    grad = torch.autograd.grad(out.loss, n_)[0][3, 0]
    n_ref = n.clone().requires_grad_(True)
    others = sum(t for i, t in enumerate(reference_terms(q, p, n_ref, 20.0, drop)) if i != 2) / 5
    torch.testing.assert_close(grad, torch.autograd.grad(others, n_ref)[0][3, 0], rtol=0, atol=1e-12)
    with_query_2 = torch.autograd.grad(reference_masked(q, p, n_ref, 20.0, {0: {1}, 1: {0}}),
                                       n_ref)[0][3, 0]
    assert (with_query_2 - grad).abs().max().item() > 1e-6   # unmasked, query 2 would push it


def test_own_positive_column_is_never_masked_even_by_margin():
    q, p, n = _embeddings()
    n = n.clone()
    n[0, 0] = q[0]                                           # scores 1.0, above any positive
    out = info_nce(q, p, n, scale=10.0, margin=0.0)
    scores = q @ torch.cat([p, n.reshape(-1, 8)]).T
    drop = {i: {c for c in range(scores.size(1)) if c != i and scores[i, c] > scores[i, i]}
            for i in range(5)}
    assert 5 in drop[0]                                      # the planted near-copy
    torch.testing.assert_close(out.loss, reference_masked(q, p, n, 10.0, drop), rtol=0, atol=1e-12)
    assert out.masked.item() == sum(len(v) for v in drop.values())


def test_symmetric_term_masks_queries_of_copied_positives():
    q, p, n = _embeddings()
    pos_ids = torch.tensor([7, 7, 3, 4, 5])
    out = info_nce(q, p, n, scale=20.0, symmetric=True, positive_ids=pos_ids,
                   negative_ids=torch.arange(200, 210).view(5, 2))
    forward = reference_masked(q, p, n, 20.0, {0: {1}, 1: {0}})
    back = 0.0
    for i in range(5):
        cols = [j for j in range(5) if not (i < 2 and j < 2 and j != i)]
        s = torch.stack([20.0 * torch.dot(p[i], q[j]) for j in cols])
        back = back - (s[cols.index(i)] - torch.logsumexp(s, 0))
    torch.testing.assert_close(out.loss, 0.5 * (forward + back / 5), rtol=0, atol=1e-12)


def test_unknown_ids_never_match_and_negative_ids_are_required():
    q, p, n = _embeddings()
    plain = info_nce(q, p, n, scale=20.0)
    zeros = info_nce(q, p, n, scale=20.0, positive_ids=torch.zeros(5, dtype=torch.long),
                     negative_ids=torch.zeros(5, 2, dtype=torch.long))
    assert torch.equal(zeros.loss, plain.loss)
    with pytest.raises(ValueError, match="negative_ids must be"):
        info_nce(q, p, n, scale=20.0, positive_ids=torch.arange(5))


def test_config_fields_parse_and_validate():
    from megatron_hybridir.config import ConfigError, load_config

    config = load_config(None, ["loss.false_negative_margin=0.1", "loss.mask_false_negatives=false"])
    assert config.loss.false_negative_margin == 0.1 and config.loss.mask_false_negatives is False
    with pytest.raises(ConfigError, match=r"loss.false_negative_margin: must be a finite"):
        load_config(None, ["loss.false_negative_margin=inf"])
    with pytest.raises(ConfigError, match=r"loss.mask_false_negatives: expected true or false"):
        load_config(None, ["loss.mask_false_negatives=maybe"])
