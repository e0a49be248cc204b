"""The typed batch: its layout is checked where it is built, ``select`` / ``split`` keep each pair's
rows and content ids together, ``to`` moves every tensor; batch kinds keep their int values and
the sampler stays free of torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.batch_kind import BatchKind

B, K, S = 4, 2, 5


def _batch(**overrides) -> Batch:
    rows = B * (2 + K)
    # Row r holds token r everywhere: every row of a selection is identifiable.
    ids = torch.arange(rows)[:, None].repeat(1, S)
    fields = dict(input_ids=ids, attention_mask=torch.ones(rows, S, dtype=torch.bool),
                  num_queries=B, num_negatives=K, kind=BatchKind.CROSS_LINGUAL,
                  positive_ids=torch.arange(100, 100 + B),
                  negative_ids=torch.arange(200, 200 + B * K), segment_lengths=[5, 5, 5])
    fields.update(overrides)
    return Batch(**fields)


def test_select_keeps_each_pairs_rows_and_content_ids_together():
    out = _batch().select([3, 1])
    # Queries 3, 1; positives B+3, B+1; negatives of 3 then of 1 (item-major).
    expected = [3, 1, B + 3, B + 1, 2 * B + 3 * K, 2 * B + 3 * K + 1, 2 * B + K, 2 * B + K + 1]
    assert out.input_ids[:, 0].tolist() == expected
    assert out.positive_ids.tolist() == [103, 101]
    assert out.negative_ids.tolist() == [200 + 3 * K, 201 + 3 * K, 200 + K, 201 + K]
    assert (out.num_queries, out.num_negatives, out.kind) == (2, K, BatchKind.CROSS_LINGUAL)
    assert out.segment_lengths == (5, 5, 5)


def test_split_gives_consecutive_chunks_that_select_the_same_rows():
    batch = _batch()
    parts = batch.split(2)
    assert [p.input_ids.tolist() for p in parts] == [batch.select([0, 1]).input_ids.tolist(),
                                                     batch.select([2, 3]).input_ids.tolist()]
    assert torch.cat([p.positive_ids for p in parts]).tolist() == batch.positive_ids.tolist()
    with pytest.raises(ValueError, match="Batch.split: 4 pairs do not divide into chunks of 3"):
        batch.split(3)


def test_layout_errors_name_the_field():
    with pytest.raises(ValueError, match=r"Batch.input_ids: expected \[16, S\] \(b=4, k=2\), got "
                                         r"\[15, 5\]"):
        _batch(input_ids=torch.zeros(15, S, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Batch.attention_mask: shape \[16, 4\] != input_ids"):
        _batch(attention_mask=torch.ones(16, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="given together or not at all"):
        _batch(negative_ids=None)
    with pytest.raises(ValueError, match="expected 4 positive_ids and 8 negative_ids, got 4 and 4"):
        _batch(negative_ids=torch.arange(4))


def test_to_moves_every_tensor_and_leaves_the_original():
    @dataclasses.dataclass(frozen=True, eq=False)
    class WithGrad(Batch):          # as GradCache's pass-2 batch carries its cached gradient
        cached_grad: torch.Tensor = None

    batch = WithGrad(**{f.name: getattr(_batch(), f.name) for f in dataclasses.fields(Batch)},
                     cached_grad=torch.ones(16, 3))
    moved = batch.to("meta")
    assert type(moved) is WithGrad
    assert {getattr(moved, f.name).device.type for f in dataclasses.fields(moved)
            if isinstance(getattr(moved, f.name), torch.Tensor)} == {"meta"}
    assert batch.input_ids.device.type == "cpu" and batch.cached_grad.device.type == "cpu"
    assert (moved.num_queries, moved.kind, moved.segment_lengths) == (B, batch.kind, (5, 5, 5))


def test_batch_kinds_keep_their_saved_int_values_and_labels():
    assert [int(k) for k in BatchKind] == [0, 1, 2]
    assert [k.label for k in BatchKind] == ["monolingual", "cross-lingual", "mixed"]
    assert _batch(kind=2).kind is BatchKind.MIXED            # an int from older state converts


def test_the_sampler_does_not_import_torch():
    code = ("import sys; import megatron_hybridir.data.sampler; "
            "sys.exit('torch imported' if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
