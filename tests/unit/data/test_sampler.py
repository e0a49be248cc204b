"""Hybrid sampler properties: batch types, languages, uniqueness, DP slices, resume, processes."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.data.sampler import HybridSampler, SamplerConfig, languages_to_mask

L = 5


def _sampler(mode="hybrid", alpha=0.5, batch=8, seed=0, n_par=40, n_mono=0, choice="batch",
             missing=False):
    rng = np.random.default_rng(123)
    if missing:  # each parallel item has a random subset of >= 2 languages
        masks = [languages_to_mask(rng.choice(L, size=rng.integers(2, L + 1), replace=False))
                 for _ in range(n_par)]
    else:
        masks = [languages_to_mask(range(L))] * n_par
    return HybridSampler(SamplerConfig(mode=mode, alpha=alpha, global_batch_size=batch, seed=seed,
                                       language_choice=choice),
                         num_languages=L, parallel_masks=np.array(masks, dtype=np.uint64),
                         mono_langs=rng.integers(0, L, n_mono).astype(np.int16))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.integers(0, 500), n_mono=st.sampled_from([0, 13]),
       choice=st.sampled_from(["batch", "example"]), missing=st.booleans())
def test_pair_languages_follow_the_batch_kind(seed, step, n_mono, choice, missing):
    sampler = _sampler(seed=seed, n_mono=n_mono, choice=choice, missing=missing)
    batch = sampler.global_batch(step)
    if batch.kind == BatchKind.MONOLINGUAL:
        assert (batch.query_lang == batch.passage_lang).all()
        if choice == "batch" and not missing:
            assert len(set(batch.query_lang[: len(batch.items) - sampler.mono_share])) == 1
    else:
        assert batch.kind == BatchKind.CROSS_LINGUAL
        assert (batch.query_lang != batch.passage_lang).all()
        assert (batch.items < 40).all()  # monolingual-only items never enter cross batches
    # Every pair uses languages its item really has.
    par = batch.items < 40
    masks = sampler.parallel_masks[batch.items[par]]
    for lang in (batch.query_lang[par], batch.passage_lang[par]):
        assert ((masks >> lang.astype(np.uint64)) & np.uint64(1)).all()


def test_monolingual_fraction_within_four_sigma_of_alpha():
    sampler = _sampler(alpha=0.5)
    kinds = sampler.kinds(20_000)
    p, n = 0.5, 20_000
    assert abs((kinds == BatchKind.MONOLINGUAL).mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert (_sampler(mode="monolingual").kinds(100) == BatchKind.MONOLINGUAL).all()
    assert (_sampler(mode="cross-lingual").kinds(100) == BatchKind.CROSS_LINGUAL).all()
    assert (_sampler(mode="mixed").kinds(100) == BatchKind.MIXED).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.integers(0, 2_000), n_mono=st.sampled_from([0, 13]))
def test_no_item_twice_in_a_global_batch(seed, step, n_mono):
    # 40 items / batch 12: epochs end mid-batch, where repeats would otherwise occur.
    batch = _sampler(seed=seed, batch=12, n_mono=n_mono).global_batch(step)
    assert len(np.unique(batch.items)) == len(batch.items) == 12


@settings(max_examples=25, deadline=None)
@given(step=st.integers(0, 300), dp=st.sampled_from([1, 2, 4, 8]))
def test_dp_slices_are_disjoint_and_cover_the_global_batch(step, dp):
    batch = _sampler(batch=16).global_batch(step)
    parts = [batch.rank_slice(r, dp) for r in range(dp)]
    assert np.array_equal(np.concatenate([p.items for p in parts]), batch.items)
    assert len(set().union(*[set(p.items.tolist()) for p in parts])) == 16
    assert {p.kind for p in parts} == {batch.kind}
    micro = parts[0].micro_batches(16 // dp // 2 if dp < 16 else 1)
    assert np.array_equal(np.concatenate([m.items for m in micro]), parts[0].items)


def test_every_item_is_seen_once_per_epoch_in_cross_only_mode():
    sampler = _sampler(mode="cross-lingual", batch=8, n_par=40)
    seen = np.concatenate([sampler.global_batch(s).items for s in range(5)])
    assert sorted(seen.tolist()) == list(range(40))


def test_resume_from_consumed_samples_gives_the_same_batches():
    straight = _sampler(n_mono=13)
    expected = [straight.global_batch(s) for s in range(60)]
    resumed = _sampler(n_mono=13)  # a new process would start with nothing cached
    for s in range(30, 60):
        got = resumed.global_batch_at_samples(s * 8)
        assert np.array_equal(got.items, expected[s].items)
        assert np.array_equal(got.query_lang, expected[s].query_lang)
        assert np.array_equal(got.passage_lang, expected[s].passage_lang)
        assert got.kind == expected[s].kind


SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {root!r})
from tests.unit.data.test_sampler import _sampler
s = _sampler(n_mono=13, missing=True)
print(",".join(str(int(x)) for b in (s.global_batch(t) for t in range(0, 400, 7))
               for x in np.concatenate([b.items, b.query_lang, b.passage_lang])))
"""


def test_same_batches_in_separate_processes():
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[3])
    outs = {subprocess.run([sys.executable, "-c", SCRIPT.format(root=root)], capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": str(h)}).stdout
            for h in (1, 2)}
    assert len(outs) == 1 and len(next(iter(outs))) > 100


def test_configuration_errors_are_named():
    with pytest.raises(ValueError, match="sampler.alpha"):
        _sampler(alpha=1.5)
    with pytest.raises(ValueError, match="sampler.mode"):
        _sampler(mode="bilingual")
    with pytest.raises(ValueError, match="cross-lingual batches need >= 8 items with two or more"):
        _sampler(n_par=5, n_mono=20)


def test_source_weights_set_each_sources_share_of_an_epoch():
    masks = np.full(100, languages_to_mask(range(L)), dtype=np.uint64)
    sources = np.array([0] * 80 + [1] * 20)
    sampler = HybridSampler(SamplerConfig(mode="cross-lingual", global_batch_size=10,
                                          source_weights=(1.0, 1.0)),
                            num_languages=L, parallel_masks=masks, parallel_sources=sources)
    epoch = np.concatenate([sampler.global_batch(s).items for s in range(10)])
    assert (sources[epoch] == 1).sum() == 50  # upsampled from 20 to half of the epoch
    assert len(np.unique(epoch[sources[epoch] == 1])) == 20
    for step in range(10):
        items = sampler.global_batch(step).items
        assert len(np.unique(items)) == len(items)
    with pytest.raises(ValueError, match="sampler.source_weights: 3 weights for 2 sources"):
        HybridSampler(SamplerConfig(source_weights=(1, 1, 1), global_batch_size=10),
                      num_languages=L, parallel_masks=masks, parallel_sources=sources)


def test_batch_language_is_uniform_by_default_and_temperature_follows_counts():
    from megatron_hybridir.data.sampler import language_weights

    assert np.allclose(language_weights(np.array([90, 10]), 0.0), [0.5, 0.5])
    assert np.allclose(language_weights(np.array([90, 10]), 1.0), [0.9, 0.1])
    assert np.allclose(language_weights(np.array([81, 1]), 2.0), [0.9, 0.1])
    sampler = _sampler(mode="monolingual", batch=4)
    langs = [sampler.global_batch(s).query_lang[0] for s in range(4000)]
    counts = np.bincount(langs, minlength=L) / 4000
    assert np.abs(counts - 1 / L).max() < 4 * np.sqrt(0.2 * 0.8 / 4000)


def test_a_zero_source_weight_is_honoured_its_items_never_drawn():
    """data.source_weights=[0, 1] (issue 24 item 12) failed at step 1 inside the sampler; a source
    of weight 0 is now simply never drawn, in either stream and in the batch-language weights."""
    masks = np.full(40, languages_to_mask(range(L)), dtype=np.uint64)
    sources = np.array([0] * 20 + [1] * 20)
    sampler = HybridSampler(SamplerConfig(mode="hybrid", global_batch_size=8,
                                          source_weights=(0.0, 1.0)),
                            num_languages=L, parallel_masks=masks, parallel_sources=sources,
                            mono_langs=np.zeros(10, np.int16), mono_sources=np.zeros(10))
    drawn = np.concatenate([sampler.global_batch(s).items for s in range(30)])
    assert len(drawn) == 30 * 8
    assert set(sources[drawn].tolist()) == {1}      # no multilingual item of source 0, no mono one
    for step in range(30):
        items = sampler.global_batch(step).items
        assert len(np.unique(items)) == len(items)


def test_zero_weights_that_leave_a_needed_stream_empty_are_refused_at_construction():
    masks = np.full(40, languages_to_mask(range(L)), dtype=np.uint64)
    with pytest.raises(ValueError, match=r"sampler.source_weights: \[0.0, 1.0\] leaves 0 "
                                         r"multilingual items with a weight above 0 \(sources \[0\]"):
        HybridSampler(SamplerConfig(mode="hybrid", global_batch_size=8, source_weights=(0.0, 1.0)),
                      num_languages=L, parallel_masks=masks, parallel_sources=np.zeros(40),
                      mono_langs=np.zeros(10, np.int16), mono_sources=np.ones(10))
