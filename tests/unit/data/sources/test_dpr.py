"""NQ in DPR training form -> English monolingual records, streamed element by element."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.build import build_dpr
from megatron_hybridir.data.sources.dpr import json_array
from tests.unit.data.sources.conftest import dpr_elements

EXPECTED = [
    {"id": "dpr-0", "lang": "en", "query": "who wrote the iliad",
     "positive": "Iliad The Iliad is attributed to Homer.", "negatives": ["Troy Troy was a city."]},
    {"id": "dpr-1", "lang": "en", "query": "Where is the Eiffel   tower",
     "positive": "Eiffel It is in Paris.", "negatives": []},
]


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def dpr_file(tmp_path):
    path = tmp_path / "biencoder-nq-train.json"
    path.write_text(json.dumps(dpr_elements(), indent=4))
    return path


def test_records_counts_and_rules(dpr_file, tmp_path):
    out = tmp_path / "nq.jsonl"
    report = build_dpr(source=str(dpr_file), output=str(out), quiet=True)
    assert _records(out) == EXPECTED
    assert (report.candidates, report.kept) == (3, 2)
    assert report.dropped == {"no positive passage": 1}
    assert report.trimmed == {"negative is a positive of the same query": 1}
    build_dpr(source=str(dpr_file), output=str(out), quiet=True, use_negative_ctxs=True)
    assert _records(out)[0]["negatives"] == ["Troy Troy was a city.", "Odyssey Random other text."]


def test_gzip_and_datasets_give_the_same_records(dpr_file, tmp_path):
    from datasets import Dataset

    gz = tmp_path / "train.json.gz"
    gz.write_bytes(gzip.compress(dpr_file.read_bytes()))
    build_dpr(source=str(gz), output=str(tmp_path / "gz.jsonl"), quiet=True)
    assert _records(tmp_path / "gz.jsonl") == EXPECTED
    build_dpr(source=Dataset.from_list(dpr_elements()), output=str(tmp_path / "ds.jsonl"), quiet=True)
    assert _records(tmp_path / "ds.jsonl") == EXPECTED


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_json_array_streams_what_json_load_reads(dpr_file, chunk):
    """Any chunk size, elements split across chunk ends and multi-byte characters included."""
    elements = dpr_elements() + [{"question": "größe 東京 " * 50, "n": [1, 2.5, None]}, 12345]
    dpr_file.write_text(json.dumps(elements, indent=2, ensure_ascii=False))
    got = list(json_array(dpr_file, chunk_size=chunk))
    assert [e for _, e in got] == json.loads(dpr_file.read_text())
    lines = dpr_file.read_text().splitlines()
    for where, element in got:          # each location is the line where its element starts
        lineno = int(re.match(rf"{re.escape(str(dpr_file))}:(\d+) \[", where).group(1))
        assert lines[lineno - 1].strip().startswith(json.dumps(element)[:1])


@pytest.mark.parametrize("text, message", [
    ('[{"question": "a"}, {"question": }]', ":1: malformed JSON in element 1"),
    ('[{"question": "a"},\n{"question": "b"}', ":2: the JSON list ends without ']' after element 1"),
    ('{"question": "a"}', ":1: expected a JSON list of DPR elements ('[')"),
    ('[{"question": "a"} {"question": "b"}]', ":1: expected ',' or ']' after element 0, got '{'"),
    ('[{"question": "a"}]\n[]', ":2: text after the end of the JSON list: '[]'"),
])
def test_malformed_json_is_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(f"{path}{message}")):
        list(json_array(path, chunk_size=4))


def test_malformed_element_names_field_and_value(tmp_path):
    elements = dpr_elements()
    elements[1]["positive_ctxs"] = [{"title": "t", "text": ["not", "a", "string"]}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(elements, indent=1))
    start = path.read_text().splitlines().index(" {", 2) + 1     # line where element 1 starts
    with pytest.raises(DataError, match=re.escape(
            f"{path}:{start} [1]: field 'positive_ctxs[0].text' must be a string, got list "
            f"['not', 'a', 'string']")):
        build_dpr(source=str(path), output=str(tmp_path / "o.jsonl"), quiet=True)
