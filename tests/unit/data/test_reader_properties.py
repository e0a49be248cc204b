"""Property-based tests (hypothesis) of the readers: random mixtures of clean and malformed records,
in JSONL and Parquet. Under ``on_error=raise`` the error is a DataError naming the file and the
first bad line (or row) — never a bare exception; under ``skip`` the items are exactly the clean
subset and ``read == kept + skipped``. Nothing malformed is ever accepted silently."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megatron_hybridir.data.readers import DataError, ReadReport, read_items

LANGS = ["en", "de"]
TEXT = st.text(min_size=1, max_size=12).filter(lambda t: t.strip())
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clean_records(draw, index: int):
    langs = draw(st.sampled_from([["en"], ["de"], ["en", "de"]]))
    record = {"id": f"r{index}", "query": {l: draw(TEXT) for l in langs},
              "positive": {l: draw(TEXT) for l in langs}}
    negatives = draw(st.lists(st.fixed_dictionaries({l: TEXT for l in langs}), max_size=2))
    if negatives:
        record["negatives"] = negatives
    if draw(st.booleans()):      # a language outside data.languages: dropped texts, record kept
        record["query"]["fr"] = draw(TEXT)
    return record


# Each mutation makes a clean record certainly invalid (a bad type, a missing field, ...).
NOT_A_LIST = st.one_of(TEXT, st.integers(), st.floats(allow_nan=True), st.booleans(),
                       st.fixed_dictionaries({"en": TEXT}))
NOT_TEXT = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(TEXT, max_size=2),
                     st.fixed_dictionaries({"x": TEXT}))
MUTATIONS = {
    "negatives not a list": lambda d, r: r.update(negatives=d(NOT_A_LIST)),
    "negative not a dict": lambda d, r: r.update(negatives=[d(st.one_of(TEXT, st.integers()))]),
    "negative text not str": lambda d, r: r.update(negatives=[{"en": d(NOT_TEXT)}]),
    "query text not str": lambda d, r: r["query"].update(en=d(NOT_TEXT)),
    "positive not a dict": lambda d, r: r.update(positive=d(st.one_of(st.integers(), st.lists(TEXT, min_size=1)))),
    "empty text": lambda d, r: r["positive"].update(de=d(st.sampled_from(["", " ", "\t\n"]))),
    "missing query": lambda d, r: r.pop("query"),
    "bad id": lambda d, r: r.update(id=d(st.one_of(st.floats(), st.booleans(), st.lists(st.integers(), max_size=2)))),
    "bad lang": lambda d, r: r.update(lang=d(st.one_of(st.integers(), st.lists(TEXT, max_size=1)))),
    "not an object": lambda d, r: r.clear() or r.update(__replace__=d(st.one_of(st.integers(), st.lists(st.integers()), TEXT))),
}
RAW_LINES = [b'{"id": "x", "query": ', b"[1, 2", b'{"id": "x", "query": {"en": "caf\xe9"}}', b"\xff\xfe{}"]


@st.composite
def jsonl_files(draw):
    """(lines as bytes, clean ids, 1-based line number of the first bad line or None)."""
    n = draw(st.integers(1, 8))
    lines, clean, first_bad = [], [], None
    for i in range(n):
        record = draw(clean_records(i))
        kind = draw(st.sampled_from(["clean"] * 3 + sorted(MUTATIONS) + ["raw"]))
        if kind == "clean":
            lines.append(json.dumps(record).encode())
            clean.append(record["id"])
            continue
        first_bad = first_bad or len(lines) + 1
        if kind == "raw":
            lines.append(draw(st.sampled_from(RAW_LINES)))
            continue
        MUTATIONS[kind](draw, record)
        value = record.pop("__replace__", record)
        lines.append(json.dumps(value).encode())
    return lines, clean, first_bad


def _write(lines) -> str:
    folder = Path(tempfile.mkdtemp(prefix="prop-"))
    path = folder / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


@PROPS
@given(jsonl_files())
def test_jsonl_raise_names_the_first_bad_line_or_reads_everything(case):
    lines, clean, first_bad = case
    path = _write(lines)
    if first_bad is None:
        assert [i.id for i in read_items(path, languages=LANGS)] == clean
        return
    with pytest.raises(DataError) as err:
        list(read_items(path, languages=LANGS))
    assert str(err.value).startswith(f"{path}:{first_bad}: ")


@PROPS
@given(jsonl_files())
def test_jsonl_skip_keeps_exactly_the_clean_subset(case):
    lines, clean, _ = case
    path = _write(lines)
    report = ReadReport(path)
    items = list(read_items(path, languages=LANGS, on_error="skip", report=report))
    assert [i.id for i in items] == clean
    assert report.read == len(lines) and report.kept == len(clean)
    assert report.read == report.kept + sum(report.skipped.values())
    for item in items:              # what is kept is well-formed
        assert all(isinstance(t, str) and t.strip() for t in [*item.query.values(), *item.positive.values()])
        assert set(item.query) <= set(LANGS) and all(set(n) <= set(LANGS) for n in item.negatives)


# Parquet needs one type per column, so a bad column is bad in the rows that carry a value and
# null (an absent language / no negatives) in the others.
PARQUET_BAD = {
    "negatives": (lambda d: d(TEXT), "field 'negatives' must be a list"),
    "query.de": (lambda d: d(st.integers(-5, 5)), "field 'query.de' must be a string, got int"),
    "positive.en": (lambda d: d(st.floats(allow_nan=False, width=32)), "field 'positive.en' must be a string, got float"),
    "id": (lambda d: d(st.lists(st.integers(0, 9), min_size=1, max_size=2)), "field 'id' must be a string or an integer"),
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parquet_wrong_types_name_the_row_or_skip_to_the_clean_subset(data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = data.draw(st.integers(1, 6))
    column = data.draw(st.sampled_from(sorted(PARQUET_BAD)))
    make_bad, message = PARQUET_BAD[column]
    bad_rows = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n)))
    rows = []
    for i in range(n):
        row = {"id": f"r{i}", "query": {"en": data.draw(TEXT), "de": data.draw(TEXT)},
               "positive": {"en": data.draw(TEXT), "de": data.draw(TEXT)}, "negatives": None}
        if column == "id":
            row["id"] = make_bad(data.draw) if i in bad_rows else None
        elif column == "negatives":
            row["negatives"] = make_bad(data.draw) if i in bad_rows else None
        else:
            field, lang = column.split(".")
            row[field][lang] = make_bad(data.draw) if i in bad_rows else None
        rows.append(row)
    folder = Path(tempfile.mkdtemp(prefix="prop-"))
    path = folder / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    if bad_rows:
        with pytest.raises(DataError) as err:
            list(read_items(str(path), languages=LANGS))
        assert str(err.value).startswith(f"{path}[{bad_rows[0]}]: {message}")
    report = ReadReport(str(path))
    items = list(read_items(str(path), languages=LANGS, on_error="skip", report=report))
    clean = [i for i in range(n) if i not in bad_rows]
    expected_ids = [f"{path}[{i}]" if column == "id" else f"r{i}" for i in clean]
    assert [item.id for item in items] == expected_ids
    assert report.kept == len(clean) and sum(report.skipped.values()) == len(bad_rows)
