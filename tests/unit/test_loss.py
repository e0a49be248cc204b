"""InfoNCE against an independent plain-PyTorch reference, gradcheck, and hard-negative layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.loss import info_nce


def reference_loss(q, p, n, scale, symmetric=False):
    """Loop-based InfoNCE: query i vs [all positives, all hard negatives]."""
    b = q.size(0)
    candidates = [p[j] for j in range(b)]
    if n is not None:
        candidates += [n[j, m] for j in range(b) for m in range(n.size(1))]
    total = 0.0
    for i in range(b):
        scores = torch.stack([scale * torch.dot(q[i], c) for c in candidates])
        total = total - (scores[i] - torch.logsumexp(scores, dim=0))
    loss = total / b
    if symmetric:
        back = 0.0
        for i in range(b):
            scores = torch.stack([scale * torch.dot(p[i], q[j]) for j in range(b)])
            back = back - (scores[i] - torch.logsumexp(scores, dim=0))
        loss = 0.5 * (loss + back / b)
    return loss


def _embeddings(b=5, k=2, d=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=dtype), dim=-1)  # noqa: E731
    return make(b, d), make(b, d), make(b, k, d)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_matches_reference(symmetric, k):
    q, p, n = _embeddings(k=max(k, 1))
    n = n[:, :k] if k else None
    out = info_nce(q, p, n, scale=20.0, symmetric=symmetric)
    torch.testing.assert_close(out.loss, reference_loss(q, p, n, 20.0, symmetric))


def test_gradcheck_float64():
    q, p, n = _embeddings(b=3, k=2, d=4)
    scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    inputs = tuple(t.clone().requires_grad_(True) for t in (q, p, n)) + (scale,)
    fn = lambda q, p, n, s: info_nce(q, p, n, scale=s, symmetric=True).loss  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


def test_accuracy_counts_queries_whose_positive_wins():
    eye = torch.eye(4)
    out = info_nce(eye, eye, None, scale=10.0)
    assert out.accuracy.item() == 1.0
    shuffled = eye[[1, 0, 2, 3]]
    assert info_nce(eye, shuffled, None, scale=10.0).accuracy.item() == 0.5


def test_uniform_scores_give_log_of_candidate_count():
    q = torch.zeros(4, 3)
    p = torch.zeros(4, 3)
    n = torch.zeros(4, 2, 3)
    assert info_nce(q, p, n, scale=1.0).loss.item() == pytest.approx(math.log(4 + 8))


def test_bad_negative_shape_is_rejected():
    q, p, n = _embeddings(b=3, k=2)
    with pytest.raises(ValueError, match=r"negatives must be \[b, k, d\]"):
        info_nce(q, p, n[:2], scale=1.0)
