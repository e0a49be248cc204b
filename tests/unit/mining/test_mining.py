"""The miner never mines a positive, its copies or its translations; margins remove exactly the
candidates above them; the output round-trips through preprocessing; reruns resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from megatron_hybridir.data.content_id import content_id
from megatron_hybridir.mining.miner import MiningConfig, mine
from megatron_hybridir.mining.select import WindowSpec, filter_candidates, select_window
from tests.unit.mining.conftest import LANGS, TrigramEncoder, planted_records


def _config(tmp_path, source, **kw):
    base = dict(input=str(source), output=str(tmp_path / "mined.jsonl"), languages=LANGS,
                model="stand-in", num_negatives=3, range_min=0, range_max=8, progress=False,
                query_block=5, shard_size=7)
    base.update(kw)
    return MiningConfig(**base)


def _forbidden(record) -> set[int]:
    """Content ids of an item's positive in every language."""
    pos = record["positive"]
    return {content_id(t) for t in (pos.values() if isinstance(pos, dict) else [pos])}


def test_no_mined_negative_is_a_positive_copy_or_translation(tmp_path, planted):
    # Depth = the whole pool, so every planted copy is a candidate and the counts are exact.
    report = mine(_config(tmp_path, planted, sampling="top", search_depth=14),
                  encoder=TrigramEncoder())
    out = [json.loads(line) for line in (tmp_path / "mined.jsonl").read_text().splitlines()]
    originals = planted_records()
    assert [r["id"] for r in out] == [r["id"] for r in originals]
    for record, original in zip(out, originals):
        assert record["query"] == original["query"] and record["positive"] == original["positive"]
        negatives = record["negatives"]
        if "lang" in record:                   # monolingual records stay monolingual
            assert isinstance(negatives, list) and all(isinstance(n, str) for n in negatives)
            texts = {record["lang"]: negatives}
        else:
            texts = {l: [n[l] for n in negatives if l in n] for l in LANGS}
        for lang, mined in texts.items():
            assert len(mined) == 3
            assert not _forbidden(record) & {content_id(t) for t in mined}, (record["id"], lang)
            assert len(set(mined)) == len(mined)
    # The planted copies were real candidates that the filters removed, not absent ones.
    removed_en, removed_de = (report["languages"][l]["removed"] for l in LANGS)
    assert removed_en["positive"] == 13 and removed_de["positive"] == 12
    # en: items 0, 1, 2 hold copies of one text (3 x 2 meetings); item 3's en query meets them as
    # copies of its de positive. de: items 0 and 4 copy each other; item 3's de text is item 0's
    # en positive, a translation-side copy for items 0, 1 and 2.
    assert removed_en["duplicate"] == 6 and removed_en["translation"] == 3
    assert removed_de["duplicate"] == 2 and removed_de["translation"] == 3
    assert report["languages"]["de"]["items_with_fewer_than_3"] == 0
    assert (tmp_path / "mined.jsonl.scores.png").stat().st_size > 0


@pytest.mark.slow
def test_parquet_in_parquet_out(tmp_path, planted):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parallel = [r for r in planted_records() if "lang" not in r]
    source = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(parallel), source)
    mine(_config(tmp_path, source, output=str(tmp_path / "mined.parquet")), encoder=TrigramEncoder())
    rows = pq.read_table(tmp_path / "mined.parquet").to_pylist()
    assert [r["id"] for r in rows] == [r["id"] for r in parallel]
    assert all(len(r["negatives"]) == 3 and set(r["negatives"][0]) == set(LANGS) for r in rows)


def _candidates(seed=0, nq=40, depth=30):
    rng = np.random.default_rng(seed)
    scores = -np.sort(-rng.uniform(-0.2, 1.0, size=(nq, depth)).astype(np.float32), axis=1)
    positions = np.tile(np.arange(depth), (nq, 1)) + 100 * np.arange(nq)[:, None]
    pool_ids = np.arange(1, 100 * nq + depth + 1, dtype=np.int64)
    own = np.full(nq, -5)
    positive_ids = np.full((nq, 2), 10**12, dtype=np.int64)
    positive_scores = rng.uniform(-0.3, 1.0, size=nq).astype(np.float32)
    return positions, scores, pool_ids, own, positive_ids, positive_scores


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_margin_removes_exactly_the_candidates_above_it(kind):
    positions, scores, pool_ids, own, positive_ids, pos = _candidates()
    spec = WindowSpec(num_negatives=2, relative_margin=0.95 if kind == "relative" else None,
                      absolute_margin=0.05 if kind == "absolute" else None)
    keep, removed = filter_candidates(positions, scores, pool_ids, own, positive_ids, 0, pos, spec)
    if kind == "relative":
        threshold = np.where(pos >= 0, 0.95 * pos, pos - 0.05 * np.abs(pos))  # m * s for s >= 0
    else:
        threshold = pos - 0.05
    expected = scores < threshold[:, None]
    np.testing.assert_array_equal(keep, expected)
    assert removed[f"{kind}_margin"] == int((~expected).sum()) > 0


def test_window_ranks_count_survivors_and_sampling_is_seeded():
    positions, scores, pool_ids, own, positive_ids, pos = _candidates(nq=5)
    keep = np.ones_like(positions, dtype=bool)
    keep[:, ::3] = False                                   # filtered candidates do not take ranks
    spec = WindowSpec(num_negatives=3, range_min=2, range_max=6, sampling="top")
    chosen, _, short = select_window(positions, scores, keep, np.arange(5), 0, spec)
    survivors = positions[:, [c for c in range(30) if c % 3]]
    np.testing.assert_array_equal(chosen, survivors[:, 2:5])
    spec.sampling = "random"
    a, _, _ = select_window(positions, scores, keep, np.arange(5), 0, spec)
    b, _, _ = select_window(positions[::-1], scores[::-1], keep[::-1], np.arange(5)[::-1], 0, spec)
    np.testing.assert_array_equal(a, b[::-1])              # per-item seeds: order-independent
    assert all(set(row) <= set(s[2:6]) for row, s in zip(a, survivors)) and short == 0


@pytest.mark.slow
def test_rerun_resumes_from_parts_and_matches(tmp_path, planted):
    config = _config(tmp_path, planted)
    first = TrigramEncoder()
    mine(config, encoder=first)
    expected = (tmp_path / "mined.jsonl").read_text()
    parts = next((tmp_path / "mined.jsonl.work").glob("parts-*"))
    victims = sorted(parts.glob("de.*.npz"))[1:]
    for path in victims:                                   # as if killed after the first de block
        path.unlink()
    (tmp_path / "mined.jsonl").unlink()
    again = TrigramEncoder()
    mine(config, encoder=again)
    assert (tmp_path / "mined.jsonl").read_text() == expected
    assert again.calls["passages"] == 0                    # pool embeddings come from the cache
    assert first.calls["queries"] == 13 + 12
    assert again.calls["queries"] == 12 - 5                # only the missing de blocks re-run


def test_bad_settings_name_the_field(tmp_path, planted):
    from megatron_hybridir.data.readers import DataError

    with pytest.raises(DataError, match=r"mining.num_negatives: 9 does not fit the window \[0, 8\)"):
        mine(_config(tmp_path, planted, num_negatives=9), encoder=TrigramEncoder())
    with pytest.raises(DataError, match="mining.relative_margin: must lie in"):
        mine(_config(tmp_path, planted, relative_margin=1.5), encoder=TrigramEncoder())


def _word_tokenizer(tmp_path, texts) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts + ["Query: Passage:"], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "</s>"]))
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    return str(tmp_path / "tok")


@pytest.mark.slow
def test_mined_file_round_trips_through_preprocessing(tmp_path, planted):
    from megatron_hybridir.data.dataset import Collator, TokenizedDataset
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
    from megatron_hybridir.data.sampler import SamplerConfig
    from megatron_hybridir.data.tokenizer import Tokenizer

    mine(_config(tmp_path, planted), encoder=TrigramEncoder())
    mined = tmp_path / "mined.jsonl"
    records = [json.loads(line) for line in mined.read_text().splitlines()]
    texts = [line for line in mined.read_text().splitlines()]
    tokenizer = _word_tokenizer(tmp_path, texts)
    out = tmp_path / "indexed"
    manifest = preprocess(PreprocessConfig(sources=[str(mined)], languages=LANGS,
                                           tokenizer=tokenizer, output=str(out), workers=1),
                          progress=False)
    assert manifest["counts"]["negative.en"] == 3 * 13 and manifest["counts"]["negative.de"] == 3 * 12
    ds = TokenizedDataset(str(out))
    tok = Tokenizer(tokenizer)
    for n, record in enumerate(records):
        for li, lang in enumerate(LANGS):
            negs = record["negatives"] if "lang" not in record else [
                {record["lang"]: t} for t in record["negatives"]]
            mined_texts = [neg[lang] for neg in negs if lang in neg]
            rows = [r.tolist() for r in ds.negatives(n, li)]
            assert rows == [tok.encode(["Passage: " + t], 256)[0] for t in mined_texts]
            assert ds.negative_content_ids(n, li) == [content_id(t) for t in mined_texts]
    en = LANGS.index("en")
    assert ds.content_id(0, en) == ds.content_id(1, en) == ds.content_id(2, en)   # planted copies
    batch = Collator(ds, num_negatives=2)(ds.sampler(SamplerConfig(global_batch_size=4,
                                                                   seed=0)).global_batch(0))
    assert batch.positive_ids.shape == (4,) and batch.negative_ids.shape == (8,)


@pytest.mark.slow
def test_hnsw_index_option_matches_exact_on_a_small_pool(tmp_path, planted):
    exact = _config(tmp_path, planted, sampling="top")
    mine(exact, encoder=TrigramEncoder())
    hnsw = _config(tmp_path, planted, sampling="top", index="hnsw",
                   output=str(tmp_path / "hnsw.jsonl"))
    mine(hnsw, encoder=TrigramEncoder())
    assert (tmp_path / "hnsw.jsonl").read_text() == (tmp_path / "mined.jsonl").read_text()


def _identical_positives(tmp_path):
    """Every item's positive is the same text: all candidates are copies of the positive."""
    path = tmp_path / "same.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"x{i}", "lang": "en", "query": f"question {i}",
                                          "positive": "one shared answer"}) for i in range(6)) + "\n")
    return path


def _tool(monkeypatch, argv):
    import megatron_hybridir.mining.miner as miner
    from tests.unit.convert.hf_fixtures import load_tool

    monkeypatch.setattr(miner, "make_encoder", lambda config: TrigramEncoder())
    return load_tool("mine_hard_negatives")(argv)


def test_mining_that_finds_nothing_fails_and_says_why(tmp_path, monkeypatch, capsys, caplog):
    source, out = _identical_positives(tmp_path), tmp_path / "mined.jsonl"
    argv = ["--input", str(source), "--output", str(out), "--languages", "en", "--model", "x",
            "--num-negatives", "2", "--range", "0", "8", "--no-progress"]
    assert _tool(monkeypatch, argv) == 2
    err = capsys.readouterr().err
    assert ("no negative for most queries of en (6 of 6 queries > max_empty_fraction 0.5; "
            "36 candidates searched, removed: positive 6, duplicate 30). Nothing written to "
            f"{out}") in err
    assert "--max-empty-fraction 1" in err and not out.exists()
    report = json.loads((tmp_path / "mined.jsonl.report.json").read_text())
    assert report["languages"]["en"]["items_with_none"] == 6
    assert "en: 6 of 6 queries got fewer than 2 negatives, 6 of them none" in caplog.text
    # accepted explicitly: written, and the shortfall is still on the console
    caplog.clear()
    assert _tool(monkeypatch, [*argv, "--max-empty-fraction", "1"]) == 0
    assert len(out.read_text().splitlines()) == 6
    assert "en: 6 of 6 queries got fewer than 2 negatives, 6 of them none" in caplog.text


def test_items_short_of_negatives_are_logged_with_counts(tmp_path, planted, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    report = mine(_config(tmp_path, planted, num_negatives=8, range_max=8),
                  encoder=TrigramEncoder())
    short = {lang: entry["items_with_fewer_than_8"] for lang, entry in report["languages"].items()}
    assert any(short.values())
    for lang, count in short.items():
        if count:
            assert f"mining {lang}: {count} of " in caplog.text


def test_an_empty_input_is_an_error(tmp_path):
    from megatron_hybridir.data.readers import DataError

    (tmp_path / "empty.jsonl").write_text("")
    encoder = TrigramEncoder()
    with pytest.raises(DataError, match=r"empty.jsonl: no item has a query and a positive in any "
                                        r"of \['en', 'de'\] \(0 items read"):
        mine(_config(tmp_path, tmp_path / "empty.jsonl"), encoder=encoder)
    assert encoder.calls == {"queries": 0, "passages": 0}
    assert not (tmp_path / "mined.jsonl").exists()
    # Nothing is left behind: no work folder holding a spool of nothing (review finding).
    assert not (tmp_path / "mined.jsonl.work").exists(), sorted(tmp_path.rglob("*"))
