"""Per-query scores: their means equal the evaluation runner's numbers on the same model and data."""

import pytest

from megatron_hybridir.evaluation.encoder import Encoder, EncoderConfig
from megatron_hybridir.evaluation.runner import EvalConfig, evaluate
from megatron_hybridir.study.scoring import (beir_query_scores, dev_score, lareqa_query_scores,
                                             query_scores, summarize)
from tests.unit.evaluation.formats import write_beir, write_lareqa

LANGS = ["en", "de", "xx"]


def _runner(tmp_path, model, benchmark, data):
    return evaluate(EvalConfig(benchmark=benchmark, data=str(data), output=str(tmp_path / benchmark / data.name),
                               plots=False, progress=False, encoder=EncoderConfig(model=str(model))))


def test_lareqa_query_means_equal_the_runner(tmp_path, tiny_st_model):
    data = write_lareqa(tmp_path / "lareqa", languages=LANGS, n_paragraphs=4)
    reference = _runner(tmp_path, tiny_st_model, "lareqa", data)["metrics"]
    encoder = Encoder(EncoderConfig(model=str(tiny_st_model)))
    scores = lareqa_query_scores(data, encoder, LANGS)
    encoder.close()
    assert set(scores["mono_mAP"]) == {f"{lang}:{p}-{s}" for lang in LANGS for p in range(4) for s in range(3)}
    means = summarize(scores)
    for metric in ("mono_mAP", "cross_mAP", "multi_mAP", "rank_distance", "same_language_top"):
        assert means[metric] == pytest.approx(reference[metric], abs=1e-9), metric
    assert dev_score(scores) == pytest.approx(0.5 * (reference["mono_mAP"] + reference["cross_mAP"]))


@pytest.mark.slow
def test_beir_query_ndcg_equals_the_runner_per_language(tmp_path, tiny_st_model):
    root = tmp_path / "beir"
    for n, lang in enumerate(LANGS):
        write_beir(root / lang, n_docs=25 + n, n_queries=6)
    encoder = Encoder(EncoderConfig(model=str(tiny_st_model)))
    scores = beir_query_scores(root, encoder, LANGS)
    encoder.close()
    for lang in LANGS:
        reference = _runner(tmp_path, tiny_st_model, "beir", root / lang)["metrics"]["nDCG@10"]
        mine = [v for k, v in scores.items() if k.startswith(f"{lang}:")]
        assert len(mine) == 6
        assert sum(mine) / len(mine) == pytest.approx(reference, abs=1e-9)


def test_query_scores_reads_both_forms_of_a_split(tmp_path, tiny_st_model):
    split = tmp_path / "test"
    write_lareqa(split / "lareqa", languages=LANGS, n_paragraphs=2)
    for lang in LANGS:
        write_beir(split / "beir" / lang, n_docs=22, n_queries=4)
    encoder = Encoder(EncoderConfig(model=str(tiny_st_model)))
    scores = query_scores(split, encoder, LANGS)
    encoder.close()
    assert set(scores) == {"beir_ndcg10", "mono_mAP", "cross_mAP", "multi_mAP", "rank_distance",
                           "same_language_top"}
    assert all(0.0 <= v <= 1.0 for m in ("beir_ndcg10", "mono_mAP") for v in scores[m].values())
