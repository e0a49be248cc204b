"""Distillation from teacher scores: equals a loop-based reference (KL and MarginMSE, with NaN
teacher scores and masked negatives excluded), has correct float64 gradients, is off and
bit-identical at weight 0, and masks the hard negatives InfoNCE masks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from megatron_hybridir.config import ConfigError, LossConfig, RunConfig, load_config
from megatron_hybridir.config.schema import DistillationConfig
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.distillation import distillation_loss, own_negative_mask, student_scores
from megatron_hybridir.training.forward_step import contrastive_loss

B, K, D = 5, 3, 8


def _embeddings(seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: F.normalize(torch.randn(*s, generator=g, dtype=torch.float64), dim=-1)  # noqa
    return make(B, D), make(B, D), make(B, K, D)


def _teacher(seed=1):
    return torch.randn(B, 1 + K, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * 3


def _reference(q, p, n, teacher, *, kind, T, Tt, excluded=()):
    """Row by row, column by column: the module docstring's formulas on the kept columns."""
    total = 0.0
    for i in range(q.size(0)):
        cols = [0] + [j + 1 for j in range(n.size(1))
                      if (i, j + 1) not in excluded and not math.isnan(teacher[i, j + 1])]
        s = [float(q[i] @ p[i])] + [float(q[i] @ n[i, c - 1]) for c in cols[1:]]
        t = [float(teacher[i, c]) for c in cols]
        if kind == "kl":
            zs = sum(math.exp(x / T) for x in s)
            zt = sum(math.exp(x / Tt) for x in t)
            total += sum(math.exp(tc / Tt) / zt * ((tc / Tt - math.log(zt)) - (sc / T - math.log(zs)))
                         for sc, tc in zip(s, t))
        else:
            errs = [((s[0] - sc) / T - (t[0] - tc) / Tt) ** 2 for sc, tc in zip(s[1:], t[1:])]
            total += sum(errs) / len(errs) if errs else 0.0
    return total / q.size(0)


@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_matches_loop_reference_with_missing_and_masked_columns(kind):
    q, p, n = _embeddings()
    teacher = _teacher()
    teacher[1, 2] = float("nan")              # a filled-in negative without a teacher score
    masked = torch.zeros(B, 1 + K, dtype=torch.bool)
    masked[3, 1] = masked[3, 3] = True        # false negatives of row 3
    masked[4, 1:] = True                      # row 4: every negative masked
    got = distillation_loss(student_scores(q, p, n), teacher, kind=kind, temperature=0.1,
                            teacher_temperature=2.0, masked=masked)
    want = _reference(q, p, n, teacher, kind=kind, T=0.1, Tt=2.0,
                      excluded={(3, 1), (3, 3), (4, 1), (4, 2), (4, 3)})
    assert math.isfinite(got.item())
    assert got.item() == pytest.approx(want, rel=1e-12, abs=1e-12)
    plain = distillation_loss(student_scores(q, p, n), _teacher(), kind=kind, temperature=0.1,
                              teacher_temperature=2.0)
    assert plain.item() == pytest.approx(_reference(q, p, n, _teacher(), kind=kind, T=0.1, Tt=2.0),
                                         rel=1e-12)


@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_gradcheck_float64(kind):
    q, p, n = (t.clone().requires_grad_(True) for t in _embeddings())
    teacher = _teacher()
    teacher[0, 1] = float("nan")
    masked = torch.zeros(B, 1 + K, dtype=torch.bool)
    masked[2, 2] = True
    fn = lambda a, b, c: distillation_loss(student_scores(a, b, c), teacher, kind=kind,  # noqa
                                           temperature=0.5, teacher_temperature=1.5, masked=masked)
    assert torch.autograd.gradcheck(fn, (q, p, n))


def test_kl_is_zero_when_student_equals_teacher():
    q, p, n = _embeddings()
    scores = student_scores(q, p, n)
    loss = distillation_loss(scores, scores * 4, kind="kl", temperature=0.25, teacher_temperature=1.0)
    assert abs(loss.item()) < 1e-12


def test_positive_without_teacher_score_is_an_error():
    q, p, n = _embeddings()
    teacher = _teacher()
    teacher[2, 0] = float("nan")
    with pytest.raises(ValueError, match="teacher score of a positive is not finite"):
        distillation_loss(student_scores(q, p, n), teacher, kind="kl", temperature=1.0,
                          teacher_temperature=1.0)


def test_own_negative_mask_follows_content_ids_and_margin():
    scores = torch.tensor([[0.5, 0.2, 0.9], [0.5, 0.1, 0.2]])
    pos_ids = torch.tensor([7, 8])
    neg_ids = torch.tensor([1, 2, 8, 0])
    mask = own_negative_mask(scores, positive_ids=pos_ids, negative_ids=neg_ids, margin=0.3)
    assert mask.tolist() == [[False, False, True], [False, True, False]]


class _NoLearnedScale:
    def logit_scale(self):
        return None


def _batch(teacher, pos_ids=None, neg_ids=None):
    rows = B * (2 + K)
    return Batch(input_ids=torch.zeros(rows, 1, dtype=torch.long),
                 attention_mask=torch.ones(rows, 1, dtype=torch.bool), num_queries=B,
                 num_negatives=K, teacher_scores=teacher, positive_ids=pos_ids,
                 negative_ids=neg_ids)


def _emb(q, p, n):
    return torch.cat([q, p, n.reshape(-1, D)])


def test_weight_zero_is_bit_identical_and_weight_adds_the_term():
    q, p, n = _embeddings()
    off = LossConfig(temperature=0.05, num_hard_negatives=K)
    base = contrastive_loss([_emb(q, p, n)], [_batch(None)], model=_NoLearnedScale(), loss=off,
                            dp_group=None)
    with_scores = contrastive_loss([_emb(q, p, n)], [_batch(_teacher())], model=_NoLearnedScale(),
                                   loss=off, dp_group=None)
    assert torch.equal(base.loss, with_scores.loss) and with_scores.distillation is None
    on = LossConfig(temperature=0.05, num_hard_negatives=K,
                    distillation=DistillationConfig(weight=0.7, kind="kl", temperature=0.1))
    out = contrastive_loss([_emb(q, p, n)], [_batch(_teacher())], model=_NoLearnedScale(), loss=on,
                           dp_group=None)
    want = _reference(q, p, n, _teacher(), kind="kl", T=0.1, Tt=1.0)
    assert out.distillation.item() == pytest.approx(want, rel=1e-12)
    assert out.loss.item() == pytest.approx(base.loss.item() + 0.7 * want, rel=1e-12)
    with pytest.raises(ValueError, match="needs teacher scores on every batch"):
        contrastive_loss([_emb(q, p, n)], [_batch(None)], model=_NoLearnedScale(), loss=on,
                         dp_group=None)


def test_false_negative_masking_excludes_the_copy_from_distillation():
    q, p, n = _embeddings()
    pos_ids = torch.arange(100, 100 + B)
    neg_ids = torch.arange(200, 200 + B * K)
    neg_ids[1 * K + 2] = pos_ids[1]           # row 1's third negative is a copy of its positive
    loss = LossConfig(temperature=0.05, num_hard_negatives=K,
                      distillation=DistillationConfig(weight=1.0, kind="margin_mse"))
    out = contrastive_loss([_emb(q, p, n)], [_batch(_teacher(), pos_ids, neg_ids)],
                           model=_NoLearnedScale(), loss=loss, dp_group=None)
    want = _reference(q, p, n, _teacher(), kind="margin_mse", T=0.05, Tt=1.0, excluded={(1, 3)})
    assert out.distillation.item() == pytest.approx(want, rel=1e-12)
    unmasked = _reference(q, p, n, _teacher(), kind="margin_mse", T=0.05, Tt=1.0)
    assert abs(unmasked - want) > 1e-3


@pytest.mark.parametrize("override, fragment", [
    ("loss.distillation.weight=-0.5", "loss.distillation.weight: must be >= 0"),
    ("loss.distillation.temperature=0", "loss.distillation.temperature: must be > 0"),
    ("loss.distillation.teacher_temperature=-1", "loss.distillation.teacher_temperature: must be > 0"),
    ("loss.distillation.kind=kld", "loss.distillation.kind"),
])
def test_config_ranges(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


def test_config_needs_hard_negatives():
    with pytest.raises(ConfigError, match="needs loss.num_hard_negatives >= 1"):
        load_config(None, ["loss.distillation.weight=1", "loss.num_hard_negatives=0"])
    assert RunConfig().loss.distillation.weight == 0.0
    assert load_config(None, ["loss.distillation.weight=0.5",
                              "loss.distillation.kind=margin_mse"]).loss.distillation.kind == "margin_mse"


def test_half_precision_scores_are_distilled_in_float32():
    q, p, n = _embeddings()
    scores = student_scores(q, p, n)
    want = distillation_loss(scores, _teacher(), kind="kl", temperature=0.05, teacher_temperature=1.0)
    got = distillation_loss(scores.bfloat16(), _teacher(), kind="kl", temperature=0.05,
                            teacher_temperature=1.0)
    assert got.dtype == torch.float32
    # Only the bf16 rounding of the scores themselves (about 3 significant digits) remains.
    assert got.item() == pytest.approx(want.item(), rel=2e-2)
