"""Metrics against hand-computed cases and against pytrec_eval / ir_measures on full runs."""

import math

import numpy as np
import pytest

from megatron_hybridir.evaluation import metrics


def test_ir_metrics_hand_case_and_pytrec_eval():
    import pytrec_eval

    qrels = {"q1": {"a": 1, "c": 2}, "q2": {"x": 1}}
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"y": 1.0}}
    got = metrics.ir_metrics(qrels, run, ["nDCG@10", "RR@10", "AP@100", "R@100"])
    dcg = 1 / math.log2(2) + 2 / math.log2(4)          # trec_eval's linear gains: a -> 1, c -> 2
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["nDCG@10"] == pytest.approx((dcg / idcg + 0) / 2, abs=1e-6)
    assert got["RR@10"] == pytest.approx((1 + 0) / 2)
    assert got["AP@100"] == pytest.approx(((1 + 2 / 3) / 2 + 0) / 2)
    assert got["R@100"] == pytest.approx(0.5)
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.100", "recall.100"}).evaluate(run)
    assert got["nDCG@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in ref.values()]), abs=1e-9)
    assert got["AP@100"] == pytest.approx(np.mean([v["map_cut_100"] for v in ref.values()]), abs=1e-9)


def test_unretrieved_query_counts_as_zero():
    got = metrics.ir_metrics({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 1.0}}, ["RR@10"])
    assert got["RR@10"] == pytest.approx(0.5)


def test_rank_metrics_equal_ir_measures_on_full_runs():
    rng = np.random.default_rng(0)
    queries, cands = rng.normal(size=(20, 8)), rng.normal(size=(50, 8))
    relevant = [sorted(rng.choice(50, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(20)]
    ranks = metrics.relevant_ranks(queries, cands, relevant, chunk=7)
    scores = (queries.astype(np.float32) @ cands.astype(np.float32).T)
    qrels = {str(q): {str(d): 1 for d in rel} for q, rel in enumerate(relevant)}
    run = {str(q): {str(d): float(scores[q, d]) for d in range(50)} for q in range(20)}
    ref = metrics.ir_metrics(qrels, run, ["AP", "R@1", "R@10"])
    got = metrics.rank_metrics(ranks)
    assert got["mAP"] == pytest.approx(ref["AP"], abs=1e-9)
    assert got["R@10"] == pytest.approx(ref["R@10"], abs=1e-9)
    assert got["R@1"] == pytest.approx(ref["R@1"], abs=1e-9)
    full = np.argsort(-scores, axis=1, kind="stable")
    for q, rel in enumerate(relevant):
        expected = sorted(int(np.where(full[q] == d)[0][0]) + 1 for d in rel)
        assert sorted(ranks[q].tolist()) == expected


def test_ties_rank_by_position():
    ranks = metrics.relevant_ranks(np.ones((1, 2)), np.ones((4, 2)), [[2]])
    assert ranks[0].tolist() == [3]


def test_language_bias_hand_case():
    ranks = [np.array([1, 5]), np.array([2, 3]), np.array([4, 1])]
    langs = [["en", "de"], ["en", "de"], ["en", "de"]]
    bias = metrics.language_bias(ranks, langs, ["en", "en", "de"])
    assert bias["rank_distance_per_language"] == {"de": 3.0, "en": 2.5}   # en: (4 + 1) / 2
    assert bias["rank_distance"] == 2.75                                    # macro over languages
    assert bias["same_language_top_per_language"] == {"de": 1.0, "en": 1.0}
    bias = metrics.language_bias([np.array([3, 1])], [["en", "de"]], ["en"])
    assert bias["same_language_top"] == 0.0


@pytest.mark.parametrize("passage,answers,expected", [
    ("It opened in 1903, in Paris.", ["1903"], True),
    ("It opened in 19033.", ["1903"], False),               # token match, not substring
    ("Café de Flore is old", ["cafe de flore"], False),     # NFD keeps the accent as a mark token
    ("CAFÉ de Flore", ["café DE flore"], True),             # uncased
    ("the U.S. army", ["U.S."], True),
])
def test_dpr_answer_matching(passage, answers, expected):
    assert metrics.has_answer(passage, answers) is expected


def test_topk_accuracy():
    hits = np.array([[False, True, False], [False, False, False], [True, False, False]])
    assert metrics.topk_accuracy(hits, (1, 2)) == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_ties_break_as_trec_eval_does_on_many_ties():
    """issue 16 item 12: embeddings on a coarse grid tie constantly; mAP and recall from the exact
    ranks equal pytrec_eval's on the full run (score descending, then docno descending)."""
    import pytrec_eval

    rng = np.random.default_rng(7)
    n_q, n_c = 30, 60
    queries = rng.integers(0, 2, size=(n_q, 3)).astype(np.float32)
    cands = rng.integers(0, 2, size=(n_c, 3)).astype(np.float32)          # 8 distinct vectors
    # Ids whose string order differs from their positions ("c:10" < "c:2"), as LAReQA's do.
    ids = [f"{rng.choice(['en', 'de'])}:0:{i % 7}:{i}" for i in range(n_c)]
    relevant = [sorted(rng.choice(n_c, size=rng.integers(1, 4), replace=False).tolist())
                for _ in range(n_q)]
    scores = queries @ cands.T
    assert len(np.unique(scores)) <= 4          # nearly everything ties
    ranks = metrics.relevant_ranks(queries, cands, relevant, chunk=11, candidate_ids=ids)
    qrels = {str(q): {ids[d]: 1 for d in rel} for q, rel in enumerate(relevant)}
    run = {str(q): {ids[d]: float(scores[q, d]) for d in range(n_c)} for q in range(n_q)}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"map", "recall.1,10"}).evaluate(run)
    got_ap = [metrics.rank_metrics([r])["mAP"] for r in ranks]
    assert got_ap == pytest.approx([ref[str(q)]["map"] for q in range(n_q)], abs=1e-12)
    got = metrics.rank_metrics(ranks)
    assert got["mAP"] == pytest.approx(np.mean([ref[str(q)]["map"] for q in range(n_q)]), abs=1e-12)
    assert got["R@10"] == pytest.approx(np.mean([ref[str(q)]["recall_10"] for q in range(n_q)]),
                                        abs=1e-12)
    # Position order would give other numbers on these ties: the ids decide.
    by_position = metrics.rank_metrics(metrics.relevant_ranks(queries, cands, relevant))
    assert abs(by_position["mAP"] - got["mAP"]) > 1e-3


def test_tie_order_is_docno_descending():
    ranks = metrics.relevant_ranks(np.ones((1, 2)), np.ones((4, 2)), [[0, 1, 2, 3]],
                                   candidate_ids=["b", "d", "a", "c"])
    assert sorted(zip(ranks[0].tolist(), "bdac")) == [(1, "d"), (2, "c"), (3, "b"), (4, "a")]
    with pytest.raises(ValueError, match="candidate ids are not unique"):
        metrics.relevant_ranks(np.ones((1, 2)), np.ones((2, 2)), [[0]], candidate_ids=["a", "a"])
