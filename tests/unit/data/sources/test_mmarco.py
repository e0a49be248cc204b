"""mMARCO -> parallel records: joined by id only, partial alignment, duplicates, malformed lines,
the ``datasets`` path equal to the file path, and the hub wiring (``load_dataset`` faked)."""

from __future__ import annotations

import json
import re

import pytest

from megatron_hybridir.data.readers import DataError, read_items
from megatron_hybridir.data.sources.build import build_mmarco
from tests.unit.data.sources.conftest import (
    MM_LANGS, QIDS, TRIPLES, mmarco_tables, passage_text, query_text,
)

LANGS = list(MM_LANGS)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _build(root, out, **kw):
    kw.setdefault("triples", str(root.parent / "triples.train.ids.small.tsv"))
    return build_mmarco(root=str(root), languages=LANGS, output=str(out), quiet=True, **kw)


def _expected(max_negatives=8, negatives=True):
    """Reference join with plain dicts (the fixture is tiny)."""
    tables = mmarco_tables()
    queries = {lang: dict(q) for lang, (q, _) in tables.items()}
    passages = {lang: dict(p) for lang, (_, p) in tables.items()}
    pos, neg = {}, {}
    for qid, p, n in TRIPLES:
        pos.setdefault(qid, p)
        if n not in neg.setdefault(qid, []) and len(neg[qid]) < max_negatives:
            neg[qid].append(n)
    out = []
    for qid in pos:
        query = {lang: queries[lang][qid] for lang in LANGS if qid in queries[lang]}
        positive = {lang: passages[lang][pos[qid]] for lang in LANGS if pos[qid] in passages[lang]}
        if not positive:
            continue
        negs = [{lang: passages[lang][n] for lang in LANGS if n in passages[lang]}
                for n in (neg[qid] if negatives else [])]
        out.append({"id": f"mmarco-{qid}", "query": query, "positive": positive,
                    "negatives": [n for n in negs if n]})
    return out


def test_records_equal_a_reference_join_by_id(mmarco_root, tmp_path):
    out = tmp_path / "mm.jsonl"
    report = _build(mmarco_root, out)
    assert _records(out) == _expected()
    assert (report.candidates, report.kept) == (7, 6)
    assert report.dropped == {"positive passage id in no collection": 1}
    assert report.skipped["repeated (query, negative) pair"] == 1
    assert report.trimmed["item lacks de (query or positive missing)"] == 1     # 1003
    assert report.trimmed["item lacks zh (query or positive missing)"] == 1     # 1004
    assert report.trimmed["negative passage id in no collection"] == 1          # 2099
    assert report.languages == {"en": 6, "de": 5, "zh": 5}
    saved = json.loads((tmp_path / "mm.report.json").read_text())
    assert saved["kept"] == 6 and saved["dropped"] == {"positive passage id in no collection": 1}


def test_no_text_ever_sits_under_another_id(mmarco_root, tmp_path):
    """German lacks query 1003, so by line number 'de query 1004' would pair with 1003: every
    text must name its own language and its item's id."""
    out = tmp_path / "mm.jsonl"
    _build(mmarco_root, out)
    records = {r["id"]: r for r in _records(out)}
    assert "de" not in records["mmarco-1003"]["query"]
    assert records["mmarco-1003"]["query"] == {"en": query_text("en", "1003"),
                                               "zh": query_text("zh", "1003")}
    positives = {q: p for q, p, _ in TRIPLES}
    for rid, record in records.items():
        qid = rid.removeprefix("mmarco-")
        for lang, text in record["query"].items():
            assert text == query_text(lang, qid)
        for lang, text in record["positive"].items():
            assert text == passage_text(lang, positives[qid])
        for negative in record["negatives"]:
            pids = {re.fullmatch(rf"{lang} passage (\d+)", t).group(1) for lang, t in negative.items()}
            assert len(pids) == 1          # one passage per negative, all its languages agree


def test_qrels_alone_give_positives_without_negatives(mmarco_root, tmp_path):
    out = tmp_path / "mm.jsonl"
    _build(mmarco_root, out, triples=None, qrels=str(mmarco_root.parent / "qrels.train.tsv"))
    assert _records(out) == _expected(negatives=False)


def test_max_negatives_caps_and_counts(mmarco_root, tmp_path):
    out = tmp_path / "mm.jsonl"
    report = _build(mmarco_root, out, max_negatives=1)
    assert _records(out) == _expected(max_negatives=1)
    assert report.trimmed["negative beyond max_negatives=1"] == 1        # 1001's second negative


def test_duplicate_id_keeps_the_first_and_counts_it(mmarco_root, tmp_path):
    collection = mmarco_root / "collections" / "german_collection.tsv"
    lines = collection.read_text().splitlines() + ["2001\tde DUPLICATE"]
    collection.write_text("\n".join(lines) + "\n")
    out = tmp_path / "mm.jsonl"
    report = _build(mmarco_root, out)
    assert _records(out) == _expected()
    assert report.skipped["duplicate de passage id, kept first"] == 1
    assert report.first_location["duplicate de passage id, kept first"] == f"{collection}:{len(lines)}"


def test_malformed_collection_line_is_named(mmarco_root, tmp_path):
    collection = mmarco_root / "collections" / "german_collection.tsv"
    lines = collection.read_text().splitlines()
    lines.insert(2, "2013 no tab here")
    collection.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(
            f"{collection}:3: expected 'id<TAB>text' (de passage), found no tab in "
            f"'2013 no tab here'")):
        _build(mmarco_root, tmp_path / "mm.jsonl")
    assert not (tmp_path / "mm.jsonl").exists()
    report = _build(mmarco_root, tmp_path / "mm.jsonl", on_error="skip")
    assert report.skipped["malformed de passage line"] == 1
    assert _records(tmp_path / "mm.jsonl") == _expected()


def test_malformed_triples_and_bad_bytes_are_named(mmarco_root, tmp_path):
    triples = mmarco_root.parent / "triples.train.ids.small.tsv"
    triples.write_text("1001\t2001\t2002\n1001\t2001\n")
    with pytest.raises(DataError, match=re.escape(
            f"{triples}:2: expected 3 columns (qid<TAB>positive pid<TAB>negative pid), found 2 "
            f"in '1001\\t2001'")):
        _build(mmarco_root, tmp_path / "mm.jsonl")
    queries = mmarco_root / "queries" / "train" / "german_queries.train.tsv"
    queries.write_bytes(b"1001\tde \xff query\n")
    triples.write_text("1001\t2001\t2002\n")
    with pytest.raises(DataError, match=re.escape(f"{queries}:1: not valid UTF-8 (byte 0xff")):
        _build(mmarco_root, tmp_path / "mm.jsonl")


def test_unknown_language_and_gzip_are_refused(mmarco_root, tmp_path):
    with pytest.raises(DataError, match="no translation for language 'xx'"):
        build_mmarco(root=str(mmarco_root), languages=["en", "xx"], output=str(tmp_path / "a.jsonl"),
                     triples=str(mmarco_root.parent / "triples.train.ids.small.tsv"), quiet=True)
    with pytest.raises(DataError, match=r"expected a \.jsonl file"):
        _build(mmarco_root, tmp_path / "a.json")
    with pytest.raises(DataError, match=re.escape("mmarco: no datasets for language(s) ['zh']")):
        build_mmarco(datasets={"en": (None, None), "de": (None, None)}, languages=LANGS,
                     output=str(tmp_path / "a.jsonl"), qrels="q.tsv", quiet=True)


def _datasets():
    from datasets import Dataset

    def table(rows):   # the hub copy's columns: id int32, text string
        return Dataset.from_dict({"id": [int(k) for k, _ in rows], "text": [t for _, t in rows]})

    return {lang: (table(q), table(p)) for lang, (q, p) in mmarco_tables().items()}


def test_datasets_path_writes_the_same_records(mmarco_root, tmp_path):
    _build(mmarco_root, tmp_path / "files.jsonl")
    build_mmarco(datasets=_datasets(), languages=LANGS, output=str(tmp_path / "ds.jsonl"),
                 triples=str(mmarco_root.parent / "triples.train.ids.small.tsv"), quiet=True)
    assert (tmp_path / "ds.jsonl").read_text() == (tmp_path / "files.jsonl").read_text()


def test_hub_names_follow_mmarco_configs(mmarco_root, tmp_path, monkeypatch):
    import datasets

    tables, calls = _datasets(), []
    by_name = {name: lang for lang, name in MM_LANGS.items()}

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        kind, language = config.split("-")
        return tables[by_name[language]][0 if kind == "queries" else 1]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    build_mmarco(hub="unicamp-dl/mmarco", languages=["en", "de"], output=str(tmp_path / "h.jsonl"),
                 triples=str(mmarco_root.parent / "triples.train.ids.small.tsv"), quiet=True)
    assert calls == [("unicamp-dl/mmarco", "queries-english", "train"),
                     ("unicamp-dl/mmarco", "collection-english", "collection"),
                     ("unicamp-dl/mmarco", "queries-german", "train"),
                     ("unicamp-dl/mmarco", "collection-german", "collection")]
    items = list(read_items(str(tmp_path / "h.jsonl"), languages=["en", "de"]))
    assert [i.id for i in items] == [f"mmarco-{q}" for q in QIDS[:6]]
