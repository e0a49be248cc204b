"""The benchmark registry is the one place a benchmark is known: registering an entry (a loader
plus one ``Benchmark(...)``) makes ``evaluate()``, the config check and the CLI accept it, and it is
scored exactly as a built-in benchmark of its kind on the same data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_hybridir.config import ConfigError
from megatron_hybridir.evaluate import main
from megatron_hybridir.evaluation import loaders, runner
from megatron_hybridir.evaluation.benchmarks import (BENCHMARKS, KINDS, Benchmark, TaskSource,
                                                     register_benchmark)
from megatron_hybridir.evaluation.encoder import EncoderConfig
from megatron_hybridir.evaluation.runner import EvalConfig, check_config, evaluate
from megatron_hybridir.evaluation.tasks import RetrievalTask
from tests.registries import temporarily_registered
from tests.unit.evaluation import formats

BUILT_IN = ["beir", "nq", "miracl", "xquad-r", "mlqa-r", "lareqa"]


def load_pairs(folder, _language, _split) -> RetrievalTask:
    """A format no built-in reads: docs.tsv (id, text) and queries.tsv (id, text, relevant id)."""
    docs = [line.rstrip("\n").split("\t") for line in open(folder / "docs.tsv")]
    queries = [line.rstrip("\n").split("\t") for line in open(folder / "queries.tsv")]
    return RetrievalTask("pairs", [d for d, _ in docs], [t for _, t in docs],
                         [q for q, _, _ in queries], [t for _, t, _ in queries],
                         {q: {d: 1} for q, _, d in queries}).check(str(folder))


TOY = Benchmark("toy-pairs", "retrieval", about="test format",
                load=lambda s: load_pairs(Path(s.data), s.language, s.split))
TOY_LAREQA = Benchmark("toy-lareqa", "lareqa",
                       load=lambda s: loaders.load_lareqa(s.data, ["en", "de"], name="toy"))


def registered(*items):
    """Register for the duration of a block; the registry is as before afterwards."""
    return temporarily_registered(BENCHMARKS, register_benchmark, *items)


def _config(tmp_path, name, data, model, **extra):
    return EvalConfig(benchmark=name, data=str(data), output=str(tmp_path / name),
                      progress=False, plots=False, encoder=EncoderConfig(model=str(model)), **extra)


def test_built_in_entries_and_kinds():
    assert list(BENCHMARKS) == BUILT_IN
    assert {b.name: b.kind for b in BENCHMARKS.values()} == {
        "beir": "retrieval", "nq": "retrieval", "miracl": "retrieval",
        "xquad-r": "lareqa", "mlqa-r": "lareqa", "lareqa": "lareqa"}
    assert set(runner._KINDS) == set(KINDS)        # every kind an entry may name has a runner
    with pytest.raises(ValueError, match=r"kind 'graph' is not one of \['retrieval', 'lareqa'\]"):
        register_benchmark(Benchmark("g", "graph", load=TOY.load))
    with pytest.raises(ValueError, match="benchmark 'beir' is already registered"):
        register_benchmark(Benchmark("beir", "retrieval", load=TOY.load))
    assert list(BENCHMARKS) == BUILT_IN


def test_a_loader_sees_only_its_task_source_filled_from_the_config(tmp_path):
    """The config is unpacked in one place (Benchmark.load_task): the loader gets data, languages,
    the run's language and the entry's split (its default_split while split is left at test)."""
    seen = []
    entry = Benchmark("toy-source", "retrieval", default_split="dev", load=seen.append,
                      load_hub=lambda s: seen.append(("hub", s)))
    config = _config(tmp_path, "toy-source", tmp_path / "d", tmp_path / "m", languages=["de", "en"])
    entry.load_task(config, "de")
    entry.load_task(_config(tmp_path, "toy-source", "name", tmp_path / "m", hub=True,
                            split="train"))
    assert seen == [TaskSource(data=str(tmp_path / "d"), languages=["de", "en"], language="de",
                               split="dev"),
                    ("hub", TaskSource(data="name", languages=None, language=None, split="train"))]


@pytest.mark.parametrize("name,hub,data,message", [
    ("mlqa-r", True, "", "hub: mlqa-r has no hub copy with sentence breaks; download the LAReQA "
                         "files (github.com/google-research-datasets/lareqa) and set data="),
    ("lareqa", True, "", "hub: lareqa has no hub copy with sentence breaks; download the LAReQA "
                         "files (github.com/google-research-datasets/lareqa) and set data="),
    ("beir", True, "", "data: the benchmark folder is required"),      # data= names the dataset
    ("beir", False, "", "data: the benchmark folder is required"),
    ("msmarco", False, "x", "benchmark: expected one of ['beir', 'nq', 'miracl', 'xquad-r', "
                            "'mlqa-r', 'lareqa'], got 'msmarco'"),
])
def test_config_check_reads_the_entry(name, hub, data, message):
    config = EvalConfig(benchmark=name, hub=hub, data=data, encoder=EncoderConfig(model="m"))
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert str(err.value) == message


@pytest.mark.parametrize("name", ["nq", "miracl", "xquad-r"])
def test_hub_benchmarks_need_no_data_folder(name):
    assert check_config(EvalConfig(benchmark=name, hub=True, encoder=EncoderConfig(model="m"))) is None
    # ... and it is hub=true that spares the folder: the same entry read locally requires one.
    with pytest.raises(ConfigError) as err:
        check_config(EvalConfig(benchmark=name, hub=False, encoder=EncoderConfig(model="m")))
    assert str(err.value) == "data: the benchmark folder is required"


def test_a_registered_benchmark_runs_like_a_built_in_one(tmp_path, tiny_st_model):
    beir = formats.write_beir(tmp_path / "beir", n_docs=12, n_queries=4)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    task = loaders.load_beir(beir)      # the same documents and queries, in the toy format
    (pairs / "docs.tsv").write_text("".join(f"{d}\t{task.passage(i)}\n"
                                            for i, d in enumerate(task.corpus_ids)))
    (pairs / "queries.tsv").write_text("".join(
        f"{q}\t{t}\t{next(iter(task.qrels[q]))}\n"
        for q, t in zip(task.query_ids, task.query_texts)))
    with pytest.raises(ConfigError, match="benchmark: expected one of"):
        evaluate(_config(tmp_path, "toy-pairs", pairs, tiny_st_model))
    with registered(TOY):
        with pytest.raises(ConfigError, match="hub: toy-pairs has no hub loader; set data="):
            check_config(_config(tmp_path, "toy-pairs", pairs, tiny_st_model, hub=True))
        results = evaluate(_config(tmp_path, "toy-pairs", pairs, tiny_st_model, k=12))
    # The reference: the built-in BEIR entry on the same texts and judgements.
    assert all(len(rels) == 1 for rels in task.qrels.values())
    reference = evaluate(_config(tmp_path, "beir", beir, tiny_st_model, k=12))
    assert results["benchmark"] == "toy-pairs" and results["dataset"] == "pairs"
    assert results["metrics"] == reference["metrics"] and results["metrics"]["nDCG@10"] > 0
    assert results["sizes"] == reference["sizes"] == {"queries": 4, "corpus": 12}
    saved = json.loads((tmp_path / "toy-pairs" / "results.json").read_text())
    assert saved["metrics"] == results["metrics"]


def test_a_registered_lareqa_benchmark_runs_every_setting(tmp_path, tiny_st_model):
    data = formats.write_lareqa(tmp_path / "x", n_paragraphs=2)
    with registered(TOY_LAREQA):
        results = evaluate(_config(tmp_path, "toy-lareqa", data, tiny_st_model))
    reference = evaluate(_config(tmp_path, "lareqa", data, tiny_st_model, languages=["en", "de"]))
    assert sorted(results["settings"]) == ["de->de", "de->en", "en->de", "en->en"]
    assert results["metrics"] == reference["metrics"]
    assert results["matrix"] == reference["matrix"]


def test_cli_lists_the_registered_benchmarks(tmp_path, capsys):
    with registered(TOY), pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "toy-pairs retrieval test format" in out
    assert "lareqa    lareqa    any folder in LAReQA form" in out
    with registered(TOY):
        assert main(["benchmark=nope", f"data={tmp_path}", "encoder.model=m"]) == 2
    assert "'lareqa', 'toy-pairs'], got 'nope'" in capsys.readouterr().err
