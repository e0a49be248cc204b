"""Paired significance tests for the study: a two-level paired bootstrap over queries and seeds.

Why it exists: a reviewer accepts "hybrid beats monolingual batches" only with a confidence interval
and a p-value (DESIGN.md §8). Two systems are compared on the same test queries, and runs with the
same seed are paired (within a size they share the initial weights and the data order). With
``D[s, q] = A[s, q] - B[s, q]`` (seeds x queries), one bootstrap draw resamples the queries with
replacement (the same queries for both systems: paired) **and** the seeds with replacement, and
takes the mean of D over the draw; 10,000 draws give

- the 95% CI: percentiles 2.5 / 97.5 of the draws;
- the two-sided p-value of "mean difference = 0": the share of draws, centred on the observed
  mean, at least as far from it as the observed mean is from 0 (the shift method of the paired
  bootstrap test; Efron & Tibshirani 1993 §16, Koehn 2004).

Resampling seeds as well as queries makes the interval include training randomness, not only the
choice of test queries. Queries and seeds are crossed, so a draw is the resampled mean of the
per-query differences (averaged over seeds) plus the resampled mean of the seed deviations, the
latter scaled to the seed variance component (see :func:`_components`; resampling the raw table at
both levels double-counts the query x seed noise and is conservative) and widened by t_{S-1}/z
(:func:`small_sample_factor`: 3 seeds have Student tails that resampling cannot show; without it
identical systems whose seeds vary much reject ~15% of the time at 5%). The report also prints every
per-seed difference and whether all seeds agree in sign.

Multiple comparisons: :func:`holm` adjusts the p-values of one report (Holm-Bonferroni, controls
the family-wise error rate at 5% over every comparison printed). Tests: identical systems reject at
about the nominal rate, a planted difference is detected, CIs cover the true difference.
What it does not do: read runs or print tables (``study.report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

METHOD = ("paired bootstrap over queries and seeds ({draws} draws; queries resampled, plus seeds "
          "resampled at their variance component, widened by t_(S-1)/z); two-sided p by the shift method; "
          "Holm-Bonferroni over all comparisons of the report")


@dataclass
class PairedResult:
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    per_seed: list[float] = field(default_factory=list)     # mean over queries, per seed
    n_queries: int = 0
    n_seeds: int = 0

    @property
    def seeds_agree(self) -> bool:
        signs = {np.sign(d) for d in self.per_seed}
        return len(signs) == 1 and 0 not in signs


def _components(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-query means over seeds, seed deviations scaled to the seed-level variance component).

    In a seeds x queries table the seed means carry the seed effect *and* the interaction noise
    averaged over queries (sigma_e^2 / Q), which the query resampling already counts; resampling
    both as they are double-counts it (McCullagh 2000) and the test turns conservative. So the seed
    deviations are scaled to the method-of-moments seed component
    sigma_s^2 = var(seed means) - sigma_e^2 / Q (two-way ANOVA residual), and by S/(S-1) for the
    bootstrap's divisor."""
    s, q = diff.shape
    query_means = diff.mean(axis=0)
    if s < 2:
        return query_means, np.zeros(s)
    seed_means = diff.mean(axis=1)
    grand = diff.mean()
    if q < 2:
        return query_means, seed_means - grand
    resid = diff - seed_means[:, None] - query_means[None, :] + grand
    sigma_e2 = float((resid ** 2).sum() / ((s - 1) * (q - 1)))
    var_seed = float(seed_means.var(ddof=1))
    sigma_s2 = max(var_seed - sigma_e2 / q, 0.0)
    pop_var = var_seed * (s - 1) / s
    scale = np.sqrt(sigma_s2 / pop_var * s / (s - 1)) if pop_var > 0 else 0.0
    return query_means, scale * (seed_means - grand)


def small_sample_factor(seeds: int, confidence: float = 0.95) -> float:
    """t_{S-1} / z at the interval's level: a mean over 3 seeds has Student tails, not normal ones,
    and resampling 3 values cannot show them; widening the seed part by this factor gives it the
    width of a t-interval over the seeds (1 when S is large or 1)."""
    from scipy import stats

    if seeds < 2:
        return 1.0
    q = 0.5 + confidence / 2
    return float(stats.t.ppf(q, seeds - 1) / stats.norm.ppf(q))


def bootstrap_means(diff: np.ndarray, draws: int, rng: np.random.Generator, *,
                    confidence: float = 0.95, chunk: int = 1000) -> np.ndarray:
    """``draws`` bootstrap means of ``diff`` [seeds, queries]: queries and seeds resampled."""
    query_means, seed_devs = _components(diff)
    seed_devs = seed_devs * small_sample_factor(diff.shape[0], confidence)
    s, q = diff.shape
    out = np.empty(draws)
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        # Resampled indices (a gather), not multinomial counts: the same distribution, and
        # numpy draws multinomials one category at a time (minutes for 2,400 queries x 10,000).
        q_draw = query_means[rng.integers(0, q, size=(n, q), dtype=np.int32)].mean(axis=1)
        s_draw = seed_devs[rng.integers(0, s, size=(n, s))].mean(axis=1)
        out[start:start + n] = q_draw + s_draw
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, draws: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> PairedResult:
    """Compare A and B given as [seeds, queries] score tables on the same queries and seeds."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"paired_bootstrap: A and B must be non-empty [seeds, queries] tables of the "
                         f"same shape, got {a.shape} and {b.shape}")
    return paired_bootstrap_diff(a - b, draws=draws, seed=seed, confidence=confidence)


def paired_bootstrap_diff(diff: np.ndarray, *, draws: int = 10_000, seed: int = 0,
                          confidence: float = 0.95) -> PairedResult:
    """The same on a table of paired differences (also differences of differences)."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 2 or diff.size == 0 or not np.isfinite(diff).all():
        raise ValueError(f"paired_bootstrap: expected a finite non-empty [seeds, queries] table, "
                         f"got shape {diff.shape}")
    observed = float(diff.mean())
    means = bootstrap_means(diff, draws, np.random.default_rng(seed), confidence=confidence)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # Shift method: the draws centred on the observed mean stand for the null distribution.
    extreme = np.abs(means - observed) >= abs(observed) - 1e-15
    p = (1.0 + extreme.sum()) / (draws + 1.0)
    return PairedResult(observed, float(low), float(high), float(min(p, 1.0)),
                        [float(v) for v in diff.mean(axis=1)], diff.shape[1], diff.shape[0])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
