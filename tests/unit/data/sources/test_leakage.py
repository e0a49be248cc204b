"""Leakage: evaluation queries read as the evaluation loaders read them; leaked items dropped and
counted per benchmark (or the build stops with on_leak="fail")."""

from __future__ import annotations

import json
import re

import pytest

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources import leakage
from megatron_hybridir.data.sources.build import build_dpr, build_miracl, build_mmarco
from megatron_hybridir.evaluation import loaders
from tests.unit.data.sources.conftest import dpr_elements, miracl_rows, write_lines


def test_query_readers_match_the_evaluation_loaders(eval_folders):
    """The leak check sees exactly the queries evaluation scores (BEIR: judged ones only)."""
    assert list(leakage.beir_queries(eval_folders["beir"])) == \
        loaders.load_beir(eval_folders["beir"], "test").query_texts == ["  EN QUERY\t1001 "]
    assert list(leakage.nq_queries(eval_folders["nq"])) == loaders.load_nq(eval_folders["nq"]).query_texts
    assert list(leakage.miracl_queries(eval_folders["miracl"])) == \
        loaders.load_miracl(eval_folders["miracl"], "sw", "dev").query_texts
    task = loaders.load_lareqa(eval_folders["lareqa"])
    assert list(leakage.lareqa_queries(eval_folders["lareqa"])) == \
        [q for lang in task.languages for q in task.questions[lang].values()]


def _checks(eval_folders, *kinds):
    return [(kind, str(eval_folders[kind]), None) for kind in kinds]


def test_mmarco_leaked_query_and_negative_drop_their_items(mmarco_root, eval_folders, tmp_path):
    out = tmp_path / "mm.jsonl"
    report = build_mmarco(root=str(mmarco_root), languages=["en", "de", "zh"], output=str(out),
                          triples=str(mmarco_root.parent / "triples.train.ids.small.tsv"),
                          leak_checks=_checks(eval_folders, "beir", "lareqa"), quiet=True)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == ["mmarco-1002", "mmarco-1003", "mmarco-1004", "mmarco-1006"]
    assert report.leakage == {
        "beir:scifact": {"queries": 1, "items": 1, "texts": {"query": 1, "positive": 0, "negative": 0}},
        "lareqa:xquad-r": {"queries": 1, "items": 1,
                           "texts": {"query": 0, "positive": 0, "negative": 1}}}
    assert report.dropped["leaked: equals an evaluation query of beir:scifact"] == 1
    assert report.dropped["leaked: equals an evaluation query of lareqa:xquad-r"] == 1
    assert report.candidates == report.kept + sum(report.dropped.values())
    saved = json.loads((tmp_path / "mm.report.json").read_text())
    assert saved["leakage"] == report.leakage and saved["settings"]["on_leak"] == "drop"


def test_dpr_and_miracl_against_nq_and_miracl(tmp_path, eval_folders):
    dpr = tmp_path / "nq.json"
    dpr.write_text(json.dumps(dpr_elements()))
    report = build_dpr(source=str(dpr), output=str(tmp_path / "nq.jsonl"), quiet=True,
                       leak_checks=_checks(eval_folders, "nq"))
    assert report.leakage["nq:nq"]["items"] == 1 and report.kept == 1
    mir = write_lines(tmp_path / "m.jsonl", (json.dumps(r) for r in miracl_rows()))
    report = build_miracl(source=str(mir), lang="sw", output=str(tmp_path / "m.out.jsonl"),
                          quiet=True, leak_checks=[("miracl", str(eval_folders["miracl"]), "dev")])
    assert report.leakage["miracl:miracl:dev"] == {
        "queries": 1, "items": 1, "texts": {"query": 1, "positive": 0, "negative": 0}}
    assert report.kept == 2


def test_on_leak_fail_stops_naming_the_item(mmarco_root, eval_folders, tmp_path):
    with pytest.raises(DataError, match=re.escape(
            "mmarco query id 1001: query text 'en query 1001' equals a query of beir:scifact")):
        build_mmarco(root=str(mmarco_root), languages=["en", "de", "zh"],
                     output=str(tmp_path / "mm.jsonl"), on_leak="fail", quiet=True,
                     triples=str(mmarco_root.parent / "triples.train.ids.small.tsv"),
                     leak_checks=_checks(eval_folders, "beir"))
    assert not (tmp_path / "mm.jsonl").exists()


def test_normalisation_and_bad_specs():
    assert leakage.normalise("  Where IS\tthe\u00a0Eiffel\n tower ") == "where is the eiffel tower"
    assert leakage.normalise("ＡＢＣ") == "abc"          # NFKC: full-width letters
    with pytest.raises(DataError, match="unknown benchmark kind 'trec'"):
        leakage.read_eval_queries("trec", "/nowhere")
    with pytest.raises(DataError, match="on_leak: expected one of"):
        leakage.LeakFilter({}, on_leak="warn")


def test_two_benchmarks_of_one_name_are_refused(eval_folders, tmp_path):
    import shutil

    other = tmp_path / "other" / "scifact"
    shutil.copytree(eval_folders["beir"], other)
    with pytest.raises(DataError, match="a benchmark named 'beir:scifact' is already checked"):
        leakage.LeakFilter.from_specs([("beir", str(eval_folders["beir"]), None),
                                       ("beir", str(other), None)])
