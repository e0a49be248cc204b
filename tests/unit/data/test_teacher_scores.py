"""Teacher scores (distillation) from records to batches: the reader checks them against the item
(file:line errors), preprocessing stores them per row, the collator puts each pair's positive and
own negatives' scores on the Batch (NaN for filled-in negatives), and a run with distillation on
stops at launch when the data lacks them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from megatron_hybridir.config import ConfigError, load_config, validate_paths
from megatron_hybridir.data.dataset import Collator, TokenizedDataset
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.data.readers import DataError, read_items
from megatron_hybridir.data.sampler import SamplerConfig
from tests.unit.data.conftest import LANGS, make_records


def _score(item: int, lang: str, slot: int) -> float:
    return 1000.0 * item + 10 * LANGS.index(lang) + slot


def _with_scores(records):
    for i, r in enumerate(records):
        r["teacher_scores"] = {l: [_score(i, l, s) for s in range(1 + len(r["negatives"]))]
                               for l in r["query"]}
    return records


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


def test_reader_keeps_scores_per_language(tmp_path):
    path = _write(tmp_path / "t.jsonl", _with_scores(make_records(4)) + [
        {"id": "m", "lang": "de", "query": "q", "positive": "p", "negatives": ["n1", "n2"],
         "teacher_scores": [3, 1.5, -2]}])
    items = list(read_items(path, languages=["en", "de"]))    # zh is dropped with its texts
    assert items[1].teacher_scores == {"de": [1010.0, 1011.0], "en": [1000.0, 1001.0]}
    assert items[0].teacher_scores == {"de": [10.0], "en": [0.0]}
    assert items[4].teacher_scores == {"de": [3.0, 1.5, -2.0]}


@pytest.mark.parametrize("scores, message", [
    ({"en": [1.0], "de": [1.0, 2.0]}, "field 'teacher_scores.en' must list 2 scores "
                                      "(the positive and 1 negative(s) in en), got [1.0]"),
    ({"en": [1.0, float("nan")], "de": [1.0, 2.0]}, "field 'teacher_scores.en[1]' must be "
                                                    "a finite number, got nan"),
    ({"en": [1.0, "2"], "de": [1.0, 2.0]}, "field 'teacher_scores.en[1]' must be a finite number, "
                                           "got '2'"),
    ({"en": [1.0, 2.0]}, "field 'teacher_scores' must have exactly the item's languages "
                         "['de', 'en'], got ['en']"),
    ([1.0, 2.0], "field 'teacher_scores' must be an object {language: [numbers]}, got list"),
])
def test_reader_names_line_and_field_of_bad_scores(tmp_path, scores, message):
    record = make_records(2)[1]
    record["teacher_scores"] = scores
    path = _write(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DataError) as err:
        list(read_items(path, languages=["en", "de"]))
    assert str(err.value).startswith(f"{path}:1: ") and message in str(err.value)


def _prep(tmp_path, hf_tokenizer, records, mono_scores=True):
    train = _write(tmp_path / "scored.jsonl", records)
    mono = _write(tmp_path / "mono.jsonl", [
        {"id": f"m{i}", "lang": "en", "query": f"en only {i}", "positive": f"en only answer {i}"}
        | ({"teacher_scores": [_score(len(records) + i, "en", 0)]} if mono_scores else {})
        for i in range(6)])
    out = tmp_path / "out"
    manifest = preprocess(PreprocessConfig(sources=[train, mono], languages=LANGS,
                                           tokenizer=hf_tokenizer, output=str(out), workers=1,
                                           chunk_size=5), progress=False)
    return out, manifest


def test_collated_teacher_scores_follow_pairs_and_languages(tmp_path, hf_tokenizer):
    records = _with_scores(make_records())
    out, manifest = _prep(tmp_path, hf_tokenizer, records)
    assert manifest["teacher_scores"] == {"items": 30}
    ds = TokenizedDataset(str(out))
    assert ds.has_teacher_scores
    collate = Collator(ds, num_negatives=2)
    sampler = ds.sampler(SamplerConfig(global_batch_size=8, seed=3))
    seen_nan = seen_neg = 0
    for step in range(6):
        micro = sampler.global_batch(step)
        batch = collate(micro)
        assert batch.teacher_scores.dtype == torch.float32
        assert list(batch.teacher_scores.shape) == [8, 3]
        for n, (item, lang) in enumerate(zip(micro.items, micro.passage_lang)):
            disk, code = ds.disk_id(int(item)), LANGS[int(lang)]
            own = len(records[disk]["negatives"]) if disk < len(records) else 0
            want = [_score(disk, code, s) for s in range(1 + own)] + [math.nan] * (2 - own)
            got = batch.teacher_scores[n].tolist()
            assert got[: 1 + own] == want[: 1 + own]
            assert all(math.isnan(x) for x in got[1 + own:])
            seen_nan += 2 - own
            seen_neg += own
        # GradCache's split keeps each pair's scores with it.
        part = batch.split(4)[1]
        assert torch.equal(part.teacher_scores.nan_to_num(-1), batch.teacher_scores[4:].nan_to_num(-1))
    assert seen_nan and seen_neg


def test_distillation_stops_at_launch_without_scores(tmp_path, hf_tokenizer):
    out, manifest = _prep(tmp_path, hf_tokenizer, _with_scores(make_records()), mono_scores=False)
    assert manifest["teacher_scores"] == {"items": 24}
    assert not TokenizedDataset(str(out)).has_teacher_scores
    on = ["loss.distillation.weight=1", f"data.path={out}"]
    with pytest.raises(ConfigError, match=f"data.path {out} has them for 24 of 30 items"):
        validate_paths(load_config(None, on))
    with pytest.raises(ConfigError, match="synthetic pairs lack"):
        validate_paths(load_config(None, ["loss.distillation.weight=1"]))
    validate_paths(load_config(None, [f"data.path={out}"]))              # off: no check


def test_distillation_launch_check_passes_with_scores(tmp_path, hf_tokenizer):
    out, _ = _prep(tmp_path, hf_tokenizer, _with_scores(make_records()))
    validate_paths(load_config(None, ["loss.distillation.weight=1", f"data.path={out}"]))
