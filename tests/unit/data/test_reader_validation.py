"""Reader validation (issue 16 items 5 and 8): wrong types and non-UTF-8 bytes stop with file, line
or row, field, value and the expected type; under ``on_error=skip`` they are counted per record."""

from __future__ import annotations

import json

import pytest

from megatron_hybridir.data.readers import DataError, ReadReport, read_items

LANGS = ["en", "de"]
GOOD = {"id": "a", "query": {"en": "q", "de": "f"}, "positive": {"en": "p", "de": "a"}}


def _jsonl(tmp_path, records, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


TYPE_CASES = [
    (dict(GOOD, negatives="some text"),
     ":2: field 'negatives' must be a list of {language: text} objects, got str 'some text'"),
    ({"id": "m", "lang": "en", "query": "q", "positive": "p", "negatives": "some text"},
     ":2: field 'negatives' must be a list of strings, got str 'some text'"),
    (dict(GOOD, query={"en": 5, "de": "f"}), ":2: field 'query.en' must be a string, got int 5"),
    (dict(GOOD, positive={"en": ["p"], "de": "a"}),
     ":2: field 'positive.en' must be a string, got list ['p']"),
    (dict(GOOD, negatives=[{"en": 3.5}]), ":2: field 'negatives[0].en' must be a string, got float 3.5"),
    (dict(GOOD, negatives=[7]), ":2: field 'negatives[0]' must map language codes to text, got int 7"),
    (dict(GOOD, id=[1, 2]), ":2: field 'id' must be a string or an integer, got list [1, 2]"),
    (dict(GOOD, id=True), ":2: field 'id' must be a string or an integer, got bool True"),
    ({"id": "m", "lang": 3, "query": "q", "positive": "p"},
     ":2: field 'lang' must be a language code string, got int 3"),
    ({"id": "m", "lang": "en", "query": 12, "positive": "p"},
     ":2: field 'query' must be a string (monolingual record, lang='en'), got int 12"),
]


@pytest.mark.parametrize("bad,message", TYPE_CASES)
def test_wrong_types_in_jsonl_name_line_field_value_and_type(tmp_path, bad, message):
    path = _jsonl(tmp_path, [GOOD, bad])
    with pytest.raises(DataError) as err:
        list(read_items(path, languages=LANGS))
    assert str(err.value) == path + message


def test_wrong_types_in_parquet_name_row_field_value_and_type(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(GOOD, negatives="x"), dict(GOOD, id="b", negatives="some text")])
    pq.write_table(table, tmp_path / "s.parquet")
    with pytest.raises(DataError) as err:
        list(read_items(str(tmp_path / "s.parquet"), languages=LANGS))
    assert str(err.value) == (f"{tmp_path / 's.parquet'}[0]: field 'negatives' must be a list of "
                              f"{{language: text}} objects, got str 'x'")
    # Integer texts in a Parquet struct: named as wrong type, not "empty".
    ints = pa.Table.from_pylist([{"id": "a", "query": {"en": "q", "de": 4},
                                  "positive": {"en": "p", "de": "a"}}])
    pq.write_table(ints, tmp_path / "i.parquet")
    with pytest.raises(DataError) as err:
        list(read_items(str(tmp_path / "i.parquet"), languages=LANGS))
    assert str(err.value) == f"{tmp_path / 'i.parquet'}[0]: field 'query.de' must be a string, got int 4"


def test_wrong_types_are_skipped_per_record(tmp_path):
    path = _jsonl(tmp_path, [GOOD] + [bad for bad, _ in TYPE_CASES] + [dict(GOOD, id="z")])
    report = ReadReport(path)
    items = list(read_items(path, languages=LANGS, on_error="skip", report=report))
    assert [i.id for i in items] == ["a", "z"]
    assert report.read == len(TYPE_CASES) + 2 == report.kept + sum(report.skipped.values())


def _non_utf8_file(tmp_path):
    path = tmp_path / "latin1.jsonl"
    lines = [json.dumps(GOOD).encode(), json.dumps(dict(GOOD, id="b")).encode(),
             '{"id": "c", "query": {"en": "caf\u00e9", "de": "x"}, "positive": {"en": "p", "de": "y"}}'
             .encode("latin-1"), json.dumps(dict(GOOD, id="d")).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_non_utf8_line_is_named(tmp_path):
    path = _non_utf8_file(tmp_path)
    with pytest.raises(DataError) as err:
        list(read_items(path, languages=LANGS))
    assert str(err.value) == (f"{path}:3: not valid UTF-8 (byte 0xe9 at column 33); re-encode the "
                              f"file as UTF-8")


def test_non_utf8_line_is_skipped_as_one_record(tmp_path):
    path = _non_utf8_file(tmp_path)
    report = ReadReport(path)
    items = list(read_items(path, languages=LANGS, on_error="skip", report=report))
    assert [i.id for i in items] == ["a", "b", "d"]
    assert report.read == 4 and report.kept == 3 and report.skipped == {"not UTF-8": 1}
    assert f"skipped 1 (not UTF-8; first at {path}:3)" in report.summary()


def test_unknown_languages_count_records_not_texts(tmp_path):
    """Three texts in 'fr' in one record and one in another: two records lost texts, none skipped."""
    fr = dict(GOOD, query={"en": "q", "de": "f", "fr": "x"}, positive={"en": "p", "de": "a", "fr": "y"},
              negatives=[{"en": "n", "fr": "z"}])
    path = _jsonl(tmp_path, [fr, dict(fr, id="b", negatives=[]), GOOD])
    report = ReadReport(path)
    items = list(read_items(path, languages=LANGS, on_error="skip", report=report))
    assert len(items) == 3 and report.read == 3 and report.kept == 3 and not report.skipped
    assert report.dropped == {"language 'fr' not in data.languages": 2}
    assert f"2 kept record(s) lost texts (language 'fr' not in data.languages; first at {path}:1)" \
        in report.summary()
