"""Per-query tables and TREC runs beside results.json: for every benchmark kind the mean of the
per-query rows of a setting equals the number results.json reports for it, and the run file
rescored by ir_measures gives the reported metric."""

import numpy as np
import pytest

from megatron_hybridir.evaluation import loaders
from megatron_hybridir.evaluation.loading import load_eval_config
from megatron_hybridir.evaluation.per_query import read_table, setting_means
from megatron_hybridir.evaluation.runner import evaluate
from tests.unit.evaluation import formats


def _run(tmp_path, benchmark, data, model, **extra):
    out = tmp_path / f"out-{benchmark}"
    overrides = [f"benchmark={benchmark}", f"data={data}", f"encoder.model={model}", f"output={out}",
                 "progress=false", "plots=false"] + [f"{k}={v}" for k, v in extra.items()]
    return evaluate(load_eval_config(None, overrides)), out


def test_beir_per_query_means_and_run_file_equal_results(tmp_path, tiny_st_model):
    import ir_measures

    data = formats.write_beir(tmp_path / "toy")
    # k=10 keeps the run file at the depth nDCG@10 reads; every measure at most 10 deep.
    results, out = _run(tmp_path, "beir", data, tiny_st_model, k=10,
                        measures="[nDCG@10,R@10,RR@10,AP@10]")
    means = setting_means(read_table(out / "per_query.jsonl"))
    assert set(means) == {"all"} and set(means["all"]) == set(results["metrics"])
    for metric, value in results["metrics"].items():
        assert means["all"][metric] == pytest.approx(value, abs=1e-12), metric
    lines = (out / "run.trec").read_text().splitlines()
    assert len(lines) == 8 * 10 and lines[0].split()[1::2] == ["Q0", "1", "out-beir"]
    task = loaders.load_beir(data)
    run = list(ir_measures.read_trec_run(str(out / "run.trec")))
    rescored = ir_measures.calc_aggregate([ir_measures.parse_measure("nDCG@10")], task.qrels, run)
    assert list(rescored.values())[0] == pytest.approx(results["metrics"]["nDCG@10"], abs=1e-6)
    assert results["per_query"] == {"table": "per_query.jsonl", "rows": 4 * 8, "runs": ["run.trec"]}


def test_nq_per_query_hits_average_to_top_k_accuracy(tmp_path, tiny_st_model):
    results, out = _run(tmp_path, "nq", formats.write_nq(tmp_path / "nq"), tiny_st_model, k=20)
    means = setting_means(read_table(out / "per_query.jsonl"))["all"]
    assert set(means) == {"top1", "top5", "top20"}
    for metric, value in results["metrics"].items():
        assert means[metric] == pytest.approx(value, abs=1e-12), metric
    assert 0 < results["metrics"]["top1"] < 1            # the check sees a mix of hits and misses
    assert len((out / "run.trec").read_text().splitlines()) == 5 * 20


def test_miracl_per_language_tables(tmp_path, tiny_st_model):
    root = formats.write_miracl(tmp_path / "m", "sw")
    formats.write_miracl(root, "yo")
    results, out = _run(tmp_path, "miracl", root, tiny_st_model, k=10,
                        measures="[nDCG@10,R@10]")
    means = setting_means(read_table(out / "per_query.jsonl"))
    assert set(means) == {"sw", "yo"}
    for lang in ("sw", "yo"):
        for metric, value in results["per_language"][lang].items():
            assert means[lang][metric] == pytest.approx(value, abs=1e-12), (lang, metric)
        assert len((out / f"run.{lang}.trec").read_text().splitlines()) == 4 * 10
    assert np.mean([means[lang]["nDCG@10"] for lang in ("sw", "yo")]) == pytest.approx(
        results["metrics"]["nDCG@10"], abs=1e-12)


def test_lareqa_settings_pool_and_bias_per_query(tmp_path, tiny_st_model):
    # Unequal query counts per setting: the summary is a mean of setting means, not of all rows.
    data = formats.write_lareqa(tmp_path / "x", drop={"xx": ["0-1", "2-2"], "de": ["1-0"]})
    results, out = _run(tmp_path, "mlqa-r", data, tiny_st_model, k=5)     # partially parallel
    means = setting_means(read_table(out / "per_query.jsonl"))
    langs = results["matrix"]["languages"]
    for name, setting in results["settings"].items():
        assert means[name]["AP"] == pytest.approx(setting["mAP"], abs=1e-12), name
    for i, a in enumerate(langs):
        assert means[f"pool:{a}"]["AP"] == pytest.approx(results["matrix"]["pool"][i], abs=1e-12)
        for bias in ("rank_distance", "same_language_top"):
            assert means[f"bias:{a}"][bias] == pytest.approx(results["per_language"][a][bias], abs=1e-12)
    m = results["metrics"]
    assert np.mean([means[f"{a}->{a}"]["AP"] for a in langs]) == pytest.approx(m["mono_mAP"], abs=1e-12)
    assert np.mean([means[f"{a}->{b}"]["AP"] for a in langs for b in langs if a != b]) == pytest.approx(
        m["cross_mAP"], abs=1e-12)
    assert np.mean([means[f"pool:{a}"]["AP"] for a in langs]) == pytest.approx(m["multi_mAP"], abs=1e-12)
    for bias in ("rank_distance", "same_language_top"):
        assert np.mean([means[f"bias:{a}"][bias] for a in langs]) == pytest.approx(m[bias], abs=1e-12)
    run = (out / "run.trec").read_text().splitlines()
    assert len(run) == (9 + 8 + 7) * 5                   # every query of every language, top 5 of the pool
    assert {line.split()[0].split(":")[0] for line in run} == set(langs)


def test_a_bad_table_line_names_file_and_line(tmp_path):
    path = tmp_path / "per_query.jsonl"
    path.write_text('{"setting": "all", "query": "q1", "metric": "nDCG@10", "value": 0.5}\n'
                    '{"setting": "all", "query": "q1", "metric": "nDCG@10", "value": 0.7}\n')
    with pytest.raises(ValueError, match=r"per_query.jsonl:2: .*query 'q1' repeated"):
        read_table(path)


def test_the_cluster_reports_per_query_metrics_average_to_the_summary(tmp_path, tiny_st_model):
    """On real evaluation output with every question in every language, the study's per-query
    metrics (``<lang>:<qid>``, study.cluster_tables) average to results.json's summary, and the
    table passes the report's consistency check."""
    from megatron_hybridir.study.cluster_tables import _check_means, _study_metrics

    results, out = _run(tmp_path, "xquad-r", formats.write_lareqa(tmp_path / "x"), tiny_st_model)
    table = read_table(out / "per_query.jsonl")
    _check_means(out, results, table)
    study = _study_metrics("xquad-r", "xquad-r", table)
    for metric in ("mono_mAP", "cross_mAP", "multi_mAP", "rank_distance", "same_language_top"):
        values = study[f"xquad-r:{metric}"]
        assert len(values) == 27 and np.mean(list(values.values())) == pytest.approx(
            results["metrics"][metric], abs=1e-12), metric


def test_one_language_run_writes_no_pool_or_bias_rows(tmp_path, tiny_st_model):
    # results.json reports pool and bias as n/a with one language; rows for them would let the
    # cluster report test a "pool mAP" that is the monolingual one.
    data = formats.write_lareqa(tmp_path / "x")
    results, out = _run(tmp_path, "xquad-r", data, tiny_st_model, k=5, languages="[en]")
    assert results["metrics"]["multi_mAP"] is None
    settings = set(setting_means(read_table(out / "per_query.jsonl")))
    assert settings == {"en->en"}, settings
