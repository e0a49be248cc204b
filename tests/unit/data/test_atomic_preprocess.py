"""Preprocessing output is all-or-nothing, the loader checks it against its manifest (issue 16
item 1), and plain pairs without hard negatives load and train (item 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from megatron_hybridir.data.dataset import Collator, TokenizedDataset
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sampler import SamplerConfig
from megatron_hybridir.data.staging import staged_folder
from tests.unit.data.conftest import LANGS, make_records


def _config(source, tokenizer, out, languages=LANGS):
    return PreprocessConfig(sources=[str(source)], languages=languages, tokenizer=tokenizer,
                            output=str(out), workers=1, chunk_size=7)


def _snapshot(path) -> dict:
    ds = TokenizedDataset(str(path))
    return {(f, i, l): ds.tokens(f, i, l).tolist() for f in ("query", "positive")
            for i in range(ds.num_items) for l in range(len(ds.languages)) if ds.has(f, i, LANGS[l])}


def test_failed_rerun_leaves_the_previous_dataset_loadable(tmp_path, corpus, hf_tokenizer):
    out = tmp_path / "out" / "x"
    preprocess(_config(corpus[0], hf_tokenizer, out), progress=False)
    before = _snapshot(out)
    files_before = sorted(p.name for p in out.iterdir())
    # A bigger file whose line 21 is malformed: the run fails after writing many rows.
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in make_records(40)]
    lines[20] = '{"id": "broken", "query": '
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{bad}:21: malformed JSON"):
        preprocess(_config(bad, hf_tokenizer, out), progress=False)
    assert sorted(p.name for p in out.iterdir()) == files_before
    assert _snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["x"]   # no staging folder left behind


def test_loader_refuses_files_that_do_not_match_the_manifest(tmp_path, corpus, hf_tokenizer):
    out = tmp_path / "x"
    preprocess(_config(corpus[0], hf_tokenizer, out), progress=False)
    bin_path = out / "query.de.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-6])    # truncated (or rewritten by another run)
    with pytest.raises(ValueError) as err:
        TokenizedDataset(str(out))
    size = bin_path.stat().st_size
    assert str(err.value) == (f"{bin_path}: {size} bytes, {out / 'manifest.json'} says {size + 6}; "
                              f"the file was truncated or replaced after preprocessing (re-run "
                              f"preprocessing)")
    bin_path.unlink()
    with pytest.raises(ValueError, match=rf"{bin_path}: listed in .*manifest.json but missing"):
        TokenizedDataset(str(out))


def test_loader_refuses_row_arrays_from_another_run(tmp_path, corpus, hf_tokenizer):
    out = tmp_path / "x"
    preprocess(_config(corpus[0], hf_tokenizer, out), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = out / "query.en.row.npy"
    np.save(rows, np.arange(5, dtype=np.int64))
    manifest["files"]["query.en.row.npy"] = rows.stat().st_size   # sizes alone would not tell
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"{rows}: 5 entries, .*manifest.json says num_items=24"):
        TokenizedDataset(str(out))


def test_output_folder_that_is_not_a_dataset_is_not_replaced(tmp_path, corpus, hf_tokenizer):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=rf"{precious}: exists and is not an output of this "
                                              rf"tool \(no manifest.json\)"):
        preprocess(_config(corpus[0], hf_tokenizer, precious), progress=False)
    assert (precious / "thesis.tex").read_text() == "years of work"
    # What an interrupted older writer left (token files, no manifest) is ours to replace.
    leftover = tmp_path / "leftover"
    leftover.mkdir()
    (leftover / "query.en.bin").write_bytes(b"half")
    preprocess(_config(corpus[0], hf_tokenizer, leftover), progress=False)
    assert TokenizedDataset(str(leftover)).num_items == 24


def test_staged_folder_keeps_old_content_on_error(tmp_path):
    final = tmp_path / "f"
    with staged_folder(final, marker="m") as stage:
        (stage / "m").write_text("1")
    with pytest.raises(RuntimeError):
        with staged_folder(final, marker="m") as stage:
            (stage / "m").write_text("2")
            raise RuntimeError("halfway")
    assert (final / "m").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_plain_pairs_without_negatives_load_and_collate(tmp_path, hf_tokenizer):
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(json.dumps({"id": f"p{i}", "query": {"en": f"en question {i}",
                                                                     "de": f"de question {i}"},
                                            "positive": {"en": f"en answer {i} fact",
                                                         "de": f"de answer {i} fact"}})
                                for i in range(2)) + "\n")
    out = tmp_path / "pairs"
    manifest = preprocess(_config(source, hf_tokenizer, out, languages=["en", "de"]), progress=False)
    assert manifest["counts"]["negative.en"] == manifest["counts"]["negative.de"] == 0
    assert not (out / "negative.en.bin").exists()     # no empty file for Megatron to mmap
    ds = TokenizedDataset(str(out))
    assert ds.negatives(0, 0) == [] and ds.negatives(1, 1) == []
    sampler = ds.sampler(SamplerConfig(global_batch_size=2, seed=1))
    collate = Collator(ds, num_negatives=1)
    for step in range(4):
        for micro in sampler.global_batch(step).micro_batches(2):
            batch = collate(micro)
            ids = batch.input_ids
            assert ids.shape[0] == 6          # 2 queries, 2 positives, 2 filled negatives
            # The filler negative of pair n is the other item's positive in n's passage language.
            items = [ds.disk_id(int(i)) for i in micro.items]
            for n in range(2):
                filler = ds.tokens("positive", items[1 - n], int(micro.passage_lang[n])).tolist()
                assert ids[4 + n][batch.attention_mask[4 + n]].tolist() == filler
    assert collate.filled_negatives == 8
