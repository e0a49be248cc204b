"""The paired bootstrap on synthetic score tables whose answer is known.

Score model: query difficulty shared by both systems (cancels in the paired difference) + a
per-seed system offset (training randomness) + per-(seed, query) noise. Repetitions are kept small
(hundreds of tables of 3 x 150, 1,000 draws) so the file runs in seconds.
"""

import numpy as np
import pytest

from megatron_hybridir.study.stats import holm, paired_bootstrap, paired_bootstrap_diff


def _tables(rng, *, shift=0.0, seeds=3, queries=150, seed_sd=0.01, noise_sd=0.2):
    difficulty = rng.uniform(0.2, 0.8, size=queries)
    def system(offset):
        return (difficulty[None, :] + offset + rng.normal(0, seed_sd, size=(seeds, 1))
                + rng.normal(0, noise_sd, size=(seeds, queries)))
    return system(shift), system(0.0)


def _repeat(n, **kwargs):
    rng = np.random.default_rng(123)
    return [paired_bootstrap(*_tables(rng, **kwargs), draws=1000, seed=i) for i in range(n)]


@pytest.mark.slow
def test_identical_systems_reject_at_about_the_nominal_rate():
    results = _repeat(300)
    rate = np.mean([r.p_value < 0.05 for r in results])
    # binomial sd at 300 repetitions is 0.013; the band allows a mildly liberal or conservative test
    assert 0.015 <= rate <= 0.095, rate


@pytest.mark.slow
def test_identical_systems_with_large_seed_variance_stay_near_nominal():
    # Seed offsets dominate: resampling only queries would reject far too often.
    results = _repeat(300, seed_sd=0.03, noise_sd=0.1)
    rate = np.mean([r.p_value < 0.05 for r in results])
    assert rate <= 0.12, rate          # measured 0.077; without the t_(S-1)/z widening 0.15
    rng = np.random.default_rng(7)
    queries_only = []
    for i in range(100):
        a, b = _tables(rng, seed_sd=0.03, noise_sd=0.1)
        d = (a - b).mean(axis=0, keepdims=True)            # seeds averaged away: queries only
        queries_only.append(paired_bootstrap_diff(d, draws=1000, seed=i).p_value < 0.05)
    assert np.mean(queries_only) > rate + 0.1              # the seed level matters, and is counted


@pytest.mark.slow
def test_planted_difference_is_detected_with_the_right_sign():
    results = _repeat(50, shift=0.12)
    assert np.mean([r.p_value < 0.05 for r in results]) >= 0.9
    assert all(r.mean_diff > 0 for r in results)
    negative = paired_bootstrap(*_tables(np.random.default_rng(1), shift=-0.08)[::1], draws=2000)
    assert negative.mean_diff < 0 and negative.ci_high < 0 and negative.p_value < 0.01


@pytest.mark.slow
def test_confidence_intervals_cover_the_true_difference():
    results = _repeat(300, shift=0.03)
    coverage = np.mean([r.ci_low <= 0.03 <= r.ci_high for r in results])
    assert 0.9 <= coverage <= 0.99, coverage


def test_result_fields_and_errors():
    a = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    b = np.zeros_like(a)
    r = paired_bootstrap(a, b, draws=500)
    assert r.mean_diff == pytest.approx(0.75)
    assert r.per_seed == [0.75, 0.75] and r.seeds_agree
    assert (r.n_seeds, r.n_queries) == (2, 4)
    assert r.ci_low <= r.mean_diff <= r.ci_high
    same = paired_bootstrap(a, a, draws=200)
    assert same.mean_diff == 0 and same.p_value == 1.0 and not same.seeds_agree
    with pytest.raises(ValueError, match=r"same shape, got \(2, 4\) and \(2, 3\)"):
        paired_bootstrap(a, b[:, :3])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap_diff(np.array([[np.nan, 1.0]]))


def test_bootstrap_matches_hand_computed_distributions():
    """Tables whose bootstrap distribution is known exactly, against references computed by hand
    (scipy's t and normal quantiles for the seed widening), not against the function itself."""
    from scipy import stats

    # Every draw of a constant table is its mean: a point interval, no draw as far from 0 as 0.5.
    r = paired_bootstrap_diff(np.full((3, 5), 0.5), draws=999, seed=3)
    assert (r.mean_diff, r.ci_low, r.ci_high) == (0.5, 0.5, 0.5)
    assert r.p_value == pytest.approx(1 / 1000)
    # One seed, queries {0, 1}: a draw's mean is 0, 0.5 or 1 (1/4, 1/2, 1/4); the 95% interval is
    # [0, 1] and the draws at 0 or 1 (half of them) are as far from 0.5 as 0.5 is from 0.
    r = paired_bootstrap_diff(np.array([[0.0, 1.0]]), draws=4000, seed=5)
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    assert 0.45 <= r.p_value <= 0.55, r.p_value       # binomial sd 0.008
    # Two seeds, constant per seed (1 and 3): no query noise, so the seed deviations +-1 are scaled
    # to sqrt(sigma_s^2 / pop_var * S / (S - 1)) = sqrt(2 / 1 * 2) = 2 and widened by t_1 / z;
    # a draw is 2 + (-a, 0, +a) with a = 2 * t_1 / z, so the interval is [2 - a, 2 + a].
    a = 2 * stats.t.ppf(0.975, 1) / stats.norm.ppf(0.975)
    r = paired_bootstrap_diff(np.array([[1.0, 1.0], [3.0, 3.0]]), draws=4000, seed=7)
    assert r.mean_diff == 2.0
    assert r.ci_low == pytest.approx(2 - a) and r.ci_high == pytest.approx(2 + a)
    assert 0.45 <= r.p_value <= 0.55, r.p_value       # a > 2: the draws at 2 +- a are extreme
    assert paired_bootstrap_diff(np.array([[1.0, 1.0], [3.0, 3.0]]), draws=4000, seed=7) == r


def test_holm_matches_the_step_down_definition():
    # sorted p: 0.01, 0.02, 0.03, 0.5 -> x4, x3, x2, x1, made monotone
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
