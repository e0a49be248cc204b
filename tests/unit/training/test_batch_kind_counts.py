"""Per-kind batch counters: a mixed batch is counted as mixed (not cross-lingual), and the counts
saved by checkpoints load back, whether keyed by label (with or without ``mixed``) or by int."""

from __future__ import annotations

import pytest

from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.training.metrics_log import BatchKindCounts


def test_each_kind_has_its_own_counter():
    counts = BatchKindCounts()
    for kind in (BatchKind.MIXED, BatchKind.MIXED, BatchKind.CROSS_LINGUAL, 0):
        counts.add(kind)
    assert counts.record() == {"monolingual_batches": 1, "cross-lingual_batches": 1,
                               "mixed_batches": 2}
    assert counts.state() == {"monolingual": 1, "cross-lingual": 1, "mixed": 2}


@pytest.mark.parametrize("saved", [
    {"monolingual": 3, "cross-lingual": 5},                   # written before the mixed counter
    {0: 3, 1: 5},                                             # kinds as ints
    {"0": 3, "1": 5, "2": 0},                                 # ints through JSON
], ids=["labels-without-mixed", "int-keys", "int-strings"])
def test_saved_counts_load(saved):
    counts = BatchKindCounts()
    counts.restore(saved)
    counts.add(BatchKind.MIXED)
    assert counts.state() == {"monolingual": 3, "cross-lingual": 5, "mixed": 1}


def test_an_unknown_saved_kind_is_refused_by_name():
    with pytest.raises(ValueError, match=r"run/step 4: extra.kinds has unknown batch kind "
                                         r"'bilingual'; expected one of \['cross-lingual', "
                                         r"'mixed', 'monolingual'\] or \[0, 1, 2\]"):
        BatchKindCounts().restore({"bilingual": 1}, where="run/step 4")
