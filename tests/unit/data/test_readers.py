"""Readers: every error names file:line and field; skip mode counts reasons; all formats."""

from __future__ import annotations

import json

import pytest

from megatron_hybridir.data.readers import (
    DataError,
    ReadReport,
    check_language_coverage,
    read_items,
)

LANGS = ["en", "de", "zh"]
GOOD = {"id": "a", "query": {"en": "q", "de": "f"}, "positive": {"en": "p", "de": "a"},
        "negatives": [{"en": "n", "de": "n2"}]}


def _write(tmp_path, lines, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return str(path)


@pytest.mark.parametrize("bad,message", [
    ('{"id": "x", "query": ', ":2: malformed JSON"),
    ({"id": "x", "positive": {"en": "p"}}, ":2: missing field 'query'"),
    ({"id": "x", "query": {"en": "q"}}, ":2: missing field 'positive'"),
    ({"id": "x", "query": {"en": "  "}, "positive": {"en": "p"}}, ":2: field 'query.en' is empty"),
    ({"id": "x", "query": {"en": "q", "de": "f"}, "positive": {"en": "p"}},
     ":2: item has 1 language(s) with both query and positive (['en']); cross-lingual batches need"
     " at least 2"),
    ({"id": "x", "query": "q", "positive": {"en": "p"}},
     ":2: field 'query' must map language codes to text"),
])
def test_bad_records_raise_with_file_line_and_field(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, bad])
    with pytest.raises(DataError) as err:
        list(read_items(path, languages=LANGS, min_languages=2))
    assert str(err.value).startswith(path) and message in str(err.value)


def test_skip_mode_counts_every_reason(tmp_path):
    path = _write(tmp_path, [GOOD, "{oops", {"query": {"en": "q"}}, GOOD,
                             {"id": "y", "query": {"en": ""}, "positive": {"en": "p"}},
                             {"id": "z", "query": {"en": "q", "fr": "q"}, "positive": {"en": "p"}}])
    report = ReadReport(path)
    items = list(read_items(path, languages=LANGS, on_error="skip", report=report,
                            min_languages=2))
    assert len(items) == 2 and report.read == 6 and report.kept == 2
    assert report.skipped["malformed JSON"] == 1
    assert report.skipped["missing 'positive'"] == 1
    assert report.skipped["empty text"] == 1
    assert report.skipped["fewer than 2 languages"] == 1
    # An unknown language drops texts of a kept or skipped record; it is no skipped record itself.
    assert report.dropped["language 'fr' not in data.languages"] == 1
    assert report.read == report.kept + sum(report.skipped.values())
    summary = report.summary()
    assert "skipped 1 (malformed JSON; first at " + path + ":2)" in summary


def test_monolingual_records_and_negatives(tmp_path):
    path = _write(tmp_path, [{"id": "m", "lang": "en", "query": "q", "positive": "p",
                              "negatives": ["n1", "n2"]}])
    (item,) = read_items(path, languages=LANGS)
    assert item.query == {"en": "q"} and item.negatives == [{"en": "n1"}, {"en": "n2"}]
    assert item.languages == ["en"]


def test_unknown_language_codes_in_config_are_rejected(tmp_path):
    path = _write(tmp_path, [GOOD])
    with pytest.raises(DataError, match=r"data.languages: unknown language code\(s\) \['English'\]"):
        list(read_items(path, languages=["en", "English"]))


def test_language_without_pairs_anywhere_is_an_error(tmp_path):
    path = _write(tmp_path, [GOOD])
    report = ReadReport(path)
    list(read_items(path, languages=LANGS, report=report))
    with pytest.raises(DataError, match=r"data.languages: \['zh'\] have no query/positive pairs"):
        check_language_coverage(LANGS, [report])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        list(read_items(str(tmp_path / "nope.jsonl"), languages=LANGS))


def test_parquet_through_datasets(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    with_zh = dict(GOOD, id="b", query={"en": "q", "zh": "w"}, positive={"en": "p", "zh": "d"})
    table = pa.Table.from_pylist([GOOD, with_zh])
    pq.write_table(table, tmp_path / "d.parquet")
    items = list(read_items(str(tmp_path / "d.parquet"), languages=LANGS, min_languages=2))
    assert [i.id for i in items] == ["a", "b"]
    # Parquet stores the struct's absent keys as null: they are absent languages, not errors.
    assert items[0].languages == ["de", "en"] and items[1].languages == ["en", "zh"]

