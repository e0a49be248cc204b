"""``same_source_batches``: every global batch from one source, sources in proportion to their
weights among those that can fill the drawn kind, no repeats, determinism and exact resume; off,
the sampler gives bit-identical batches to the sampler before the option existed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.data.sampler import HybridSampler, SamplerConfig, languages_to_mask

L = 4


def _sampler(*, same=True, batch=8, seed=11, n_par=(30, 20), n_mono=(0, 0, 17), **kw):
    """Sources 0.. with ``n_par[s]`` parallel items each, then ``n_mono[s]`` monolingual-only
    items of source s (the default: source 2 is monolingual-only)."""
    rng = np.random.default_rng(7)
    masks = np.array([languages_to_mask(rng.choice(L, size=rng.integers(2, L + 1), replace=False))
                      for _ in range(sum(n_par))], dtype=np.uint64)
    psrc = np.repeat(np.arange(len(n_par)), n_par).astype(np.int32)
    msrc = np.repeat(np.arange(len(n_mono)), n_mono).astype(np.int32)
    return HybridSampler(SamplerConfig(global_batch_size=batch, seed=seed, same_source_batches=same,
                                       **kw),
                         num_languages=L, parallel_masks=masks,
                         mono_langs=rng.integers(0, L, len(msrc)).astype(np.int16),
                         parallel_sources=psrc, mono_sources=msrc)


def _source_of(sampler: HybridSampler, items: np.ndarray) -> np.ndarray:
    return np.concatenate(sampler._sources)[items]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.integers(0, 1_000),
       mode=st.sampled_from(["hybrid", "monolingual", "cross-lingual", "mixed"]))
def test_every_batch_is_single_source_without_repeats(seed, step, mode):
    # Pools of 30 / 20 / 17 items and batches of 8: epochs end inside batches.
    sampler = _sampler(seed=seed, mode=mode)
    batch = sampler.global_batch(step)
    assert len(np.unique(batch.items)) == len(batch.items) == 8
    assert set(_source_of(sampler, batch.items).tolist()) == {batch.source}
    if batch.kind != BatchKind.MONOLINGUAL:
        assert batch.source != 2                      # monolingual-only: monolingual batches only
        assert (batch.query_lang != batch.passage_lang).all() or batch.kind == BatchKind.MIXED
    else:
        assert (batch.query_lang == batch.passage_lang).all()
    assert {p.source for p in batch.micro_batches(4)} == {batch.source}
    assert {batch.rank_slice(r, 2).source for r in range(2)} == {batch.source}


def _frequencies(sampler, kind, steps):
    kinds = sampler.kinds(steps)
    sources = sampler.same_source.sources(kinds)
    picked = sources[kinds == kind]
    return np.bincount(picked, minlength=3) / len(picked), len(picked)


def test_source_frequencies_follow_the_weights():
    # Tolerance: a source's frequency over n batches is binomial with standard deviation
    # sqrt(p (1 - p) / n); 4 sigma is exceeded with probability 6e-5 per source by chance, and
    # the seed is fixed, so the test is deterministic: it fails only when the draw is biased.
    sampler = _sampler(source_weights=(0.5, 0.2, 0.3), alpha=0.5)
    for kind, expected in ((BatchKind.MONOLINGUAL, np.array([0.5, 0.2, 0.3])),
                           # cross-lingual: source 2 (monolingual-only) cannot fill one; the
                           # others' weights renormalise to 5:2.
                           (BatchKind.CROSS_LINGUAL, np.array([5 / 7, 2 / 7, 0.0]))):
        got, n = _frequencies(sampler, kind, 40_000)
        assert n > 15_000
        sigma = np.sqrt(expected * (1 - expected) / n)
        assert (np.abs(got - expected) <= 4 * sigma).all(), (kind, got, expected)
    # Default: proportional to size (30, 20, 17 items).
    got, n = _frequencies(_sampler(mode="monolingual"), BatchKind.MONOLINGUAL, 20_000)
    expected = np.array([30, 20, 17]) / 67
    assert (np.abs(got - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)).all()


def test_items_are_read_in_epochs_of_each_pool():
    # cross-lingual only, source 0 has 32 items and batch 8: its first four batches are one epoch.
    sampler = _sampler(mode="cross-lingual", n_par=(32, 16), n_mono=())
    from0 = [sampler.global_batch(s).items for s in range(200) if sampler.global_batch(s).source == 0]
    assert sorted(np.concatenate(from0[:4]).tolist()) == list(range(32))


def test_same_batches_from_a_fresh_sampler_at_any_step():
    straight = _sampler()
    expected = [straight.global_batch(s) for s in range(80)]
    for k in (0, 1, 37, 79):
        resumed = _sampler()                          # a new process: nothing cached
        got = resumed.global_batch_at_samples(k * 8)
        for field in ("items", "query_lang", "passage_lang"):
            assert np.array_equal(getattr(got, field), getattr(expected[k], field))
        assert (got.kind, got.source, got.fallbacks) == (expected[k].kind, expected[k].source,
                                                         expected[k].fallbacks)
    # Asking far ahead first (a larger cache) changes nothing.
    ahead = _sampler()
    ahead.global_batch(5_000)
    assert all(np.array_equal(ahead.global_batch(s).items, expected[s].items) for s in range(80))


def test_monolingual_batches_take_a_language_their_source_has():
    # Source 0 has en/de only, source 1 zh/ja only: a batch language drawn from all four would be
    # missing for every pair of the batch (all fallbacks, several languages in one batch).
    masks = np.array([languages_to_mask([0, 1])] * 16 + [languages_to_mask([2, 3])] * 16,
                     dtype=np.uint64)
    sampler = HybridSampler(SamplerConfig(mode="monolingual", global_batch_size=8, seed=3,
                                          same_source_batches=True),
                            num_languages=L, parallel_masks=masks,
                            parallel_sources=np.repeat([0, 1], 16).astype(np.int32))
    for step in range(200):
        batch = sampler.global_batch(step)
        assert batch.fallbacks == 0
        assert len(set(batch.query_lang.tolist())) == 1
        assert set(batch.query_lang.tolist()) <= ({0, 1} if batch.source == 0 else {2, 3})


def test_no_source_can_fill_the_kind_is_a_configuration_error():
    # Only source 2 is big enough, and it is monolingual-only: no cross-lingual batch can be filled.
    with pytest.raises(ValueError, match=r"data.same_source_batches: no source has 8 items with two "
                                         r"or more languages \(the global batch\) to fill a "
                                         r"cross-lingual batch alone \(per source: \[6, 6, 0\]\)"):
        _sampler(n_par=(6, 6), n_mono=(0, 0, 30), source_weights=(0, 0, 1))
    # The same data in monolingual mode is fine.
    _sampler(n_par=(6, 6), n_mono=(0, 0, 30), source_weights=(0, 0, 1), mode="monolingual")
    with pytest.raises(ValueError, match=r"source\(s\) \[1\] have \[6\] items, fewer than the "
                                         r"global batch of 8"):
        _sampler(n_par=(30, 6), n_mono=())
    with pytest.raises(ValueError, match="sampler.same_source_batches: expected true or false"):
        _sampler(same="yes")


def _digest(sampler, steps=200):
    h = hashlib.sha256()
    for step in range(steps):
        b = sampler.global_batch(step)
        assert b.source is None
        h.update(np.array([step, int(b.kind), b.fallbacks], np.int64).tobytes())
        for a in (b.items, b.query_lang, b.passage_lang):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# Digests of 200 batches of the sampler at commit fc08909 (before same_source_batches existed),
# from the same data (sources 0 and 1 alternate over 30 parallel items, 17 monolingual-only
# items are source 2).
BEFORE = {
    "hybrid": ({}, "8fe2f8828304c2760cbf31a86c78a7066a76e50660a68fae9eabab124923c19d"),
    "weights": ({"source_weights": (0.5, 0.2, 0.3)},
                "dedecde67bbbbbcf248c7bacf23a227b8d1fcffd878eb1839e21ce6e1cd62d0f"),
    "mixed": ({"mode": "mixed"}, "3aeae93bc07cc932d85defa795424da9defd18d9c13d605e36c7051901315db6"),
    "example": ({"language_choice": "example", "alpha": 0.7},
                "45fde90e17a954ac354a8d1712ccde37ed3ff8988cf6cb9d4d3d0eec436260d2"),
    "temperature": ({"language_temperature": 1.0, "mode": "monolingual"},
                    "a2f155b821ad3f61718c120c4ef970b8362fca28f949f1eb71bc554a2adbb8c7"),
}


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_default_off_is_bit_identical_to_before(case):
    kw, digest = BEFORE[case]
    rng = np.random.default_rng(7)
    masks = np.array([languages_to_mask(rng.choice(L, size=rng.integers(2, L + 1), replace=False))
                      for _ in range(30)], dtype=np.uint64)
    mono = rng.integers(0, L, 17).astype(np.int16)
    sampler = HybridSampler(SamplerConfig(global_batch_size=8, seed=11, **kw), num_languages=L,
                            parallel_masks=masks, mono_langs=mono,
                            parallel_sources=(np.arange(30) % 2).astype(np.int32),
                            mono_sources=np.full(17, 2, np.int32))
    assert _digest(sampler) == digest

