"""MIRACL's training split -> monolingual records: JSONL, .jsonl.gz and a ``datasets`` table give
the same records; duplicates keep the first; malformed rows name file, line, field and value."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.build import build_miracl
from tests.unit.data.sources.conftest import miracl_rows, write_lines

EXPECTED = [
    {"id": "miracl-sw-0", "lang": "sw", "query": "sw swali 0", "positive": "Title 10#0 jibu 0",
     "negatives": ["Title 11#0 si 0", "Title 12#0 si 0c"]},
    {"id": "miracl-sw-2", "lang": "sw", "query": "sw swali 2", "positive": "Title 14#0 jibu 2",
     "negatives": []},
    {"id": "miracl-sw-3", "lang": "sw", "query": "leaked miracl topic",
     "positive": "Title 16#0 jibu 3", "negatives": []},
]


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def miracl_file(tmp_path):
    return write_lines(tmp_path / "miracl-train-sw.jsonl", (json.dumps(r) for r in miracl_rows()))


def test_records_counts_and_rules(miracl_file, tmp_path):
    out = tmp_path / "m.jsonl"
    report = build_miracl(source=str(miracl_file), lang="sw", output=str(out), quiet=True)
    assert _records(out) == EXPECTED
    assert (report.candidates, report.kept) == (4, 3)
    assert report.dropped == {"no positive passage": 1}
    assert report.first_location["no positive passage"] == f"{miracl_file}:2"
    assert report.skipped == {"duplicate MIRACL query_id, kept first": 1}
    assert report.first_location["duplicate MIRACL query_id, kept first"] == f"{miracl_file}:4"
    assert report.trimmed == {"extra positives (one item per query: the first)": 1,
                              "negative is a positive of the same query": 1}


def test_gzip_and_datasets_give_the_same_records(miracl_file, tmp_path):
    from datasets import Dataset

    gz = tmp_path / "train.jsonl.gz"
    gz.write_bytes(gzip.compress(miracl_file.read_bytes()))
    build_miracl(source=str(gz), lang="sw", output=str(tmp_path / "gz.jsonl"), quiet=True)
    assert _records(tmp_path / "gz.jsonl") == EXPECTED
    from_json = Dataset.from_json(str(miracl_file))          # local file read by datasets
    build_miracl(source=from_json, lang="sw", output=str(tmp_path / "ds.jsonl"), quiet=True)
    assert _records(tmp_path / "ds.jsonl") == EXPECTED
    from_list = Dataset.from_list(miracl_rows())
    build_miracl(source=from_list, lang="sw", output=str(tmp_path / "dl.jsonl"), quiet=True)
    assert _records(tmp_path / "dl.jsonl") == EXPECTED


def test_hub_name_goes_to_load_dataset(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(miracl_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake)
    build_miracl(hub="miracl/miracl", lang="sw", output=str(tmp_path / "h.jsonl"), quiet=True)
    assert calls == [("miracl/miracl", "sw", "train")]
    assert _records(tmp_path / "h.jsonl") == EXPECTED


@pytest.mark.parametrize("row, message", [
    ({"query_id": "9", "query": "q", "positive_passages": [{"docid": "1", "text": 5}]},
     "field 'positive_passages[0].text' must be a string, got int 5"),
    ({"query_id": "9", "positive_passages": []},
     "missing field 'query' (MIRACL: query_id, query, positive_passages, negative_passages: "
     "expected a string)"),
    ({"query_id": "9", "query": "q", "positive_passages": "p1"},
     "field 'positive_passages' must be a list of passage objects, got str 'p1'"),
    ({"query_id": True, "query": "q", "positive_passages": []},
     "field 'query_id' must be a string id, got bool True"),
])
def test_malformed_rows_are_named(tmp_path, row, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(miracl_rows()[0]), json.dumps(row)])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: {message}")):
        build_miracl(source=str(path), lang="sw", output=str(tmp_path / "o.jsonl"), quiet=True)
    report = build_miracl(source=str(path), lang="sw", output=str(tmp_path / "o.jsonl"),
                          quiet=True, on_error="skip")
    assert (report.candidates, report.kept, sum(report.dropped.values())) == (2, 1, 1)


def test_malformed_json_line_is_named(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(miracl_rows()[0]), '{"query_id": "1",'])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: malformed JSON")):
        build_miracl(source=str(path), lang="sw", output=str(tmp_path / "o.jsonl"), quiet=True)


def test_a_lone_surrogate_is_the_records_error_not_the_builds(tmp_path):
    # json.loads accepts "\ud83d" and yields a str that cannot be written as UTF-8: the build used
    # to die in the middle of the write (UnicodeEncodeError), even with on_error="skip".
    row = dict(miracl_rows()[0], query_id="9", query="broken \\ud83d emoji")
    text = json.dumps(row).replace("\\\\ud83d", "\\ud83d")
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(miracl_rows()[0]), text])
    with pytest.raises(DataError, match=r"an unpaired surrogate, which is not valid Unicode"):
        build_miracl(source=str(path), lang="sw", output=str(tmp_path / "o.jsonl"), quiet=True)
    report = build_miracl(source=str(path), lang="sw", output=str(tmp_path / "o.jsonl"),
                          quiet=True, on_error="skip")
    assert (report.candidates, report.kept) == (2, 1)
    assert report.dropped == {"text is not valid Unicode (unpaired surrogate)": 1}
    assert len(_records(tmp_path / "o.jsonl")) == 1
