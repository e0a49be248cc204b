"""The report on a synthetic study folder whose effects are planted: the comparisons find them, the
words follow the numbers, the plots are written."""

import json

import numpy as np
import pytest

from megatron_hybridir.study.analysis import analyse, load_study
from megatron_hybridir.study.report import write_report
from megatron_hybridir.study.scoring import METRICS

QUERIES = [f"{lang}:{i}" for lang in ("xa", "ya") for i in range(60)]
# Planted: hybrid (0.5) loses 0.10 X->X mAP to alpha=1 at S and nothing at M (the trade-off
# narrows); it gains 0.20 X->Y mAP over alpha=1 at both sizes; nothing else differs.
EFFECTS = {("S", 0.5, "mono_mAP"): -0.10, ("S", 0.5, "cross_mAP"): 0.20, ("M", 0.5, "cross_mAP"): 0.20}


def write_cells(out, *, failed=()):
    rng = np.random.default_rng(0)
    base = {m: rng.uniform(0.2, 0.6, len(QUERIES)) for m in METRICS}
    for size, params in (("S", 30_000), ("M", 300_000)):
        for alpha in (0.0, 0.5, 1.0):
            for seed in (1, 2, 3):
                folder = out / "cells" / f"{size}_a{alpha:g}_s{seed}"
                folder.mkdir(parents=True)
                if (size, alpha, seed) in failed:
                    (folder / "failed.json").write_text(json.dumps({"cell": folder.name, "status": "failed"}))
                    continue
                scores = {m: {q: float(v + EFFECTS.get((size, alpha, m), 0.0) + rng.normal(0, 0.05))
                              for q, v in zip(QUERIES, base[m])} for m in METRICS}
                (folder / "scores.json").write_text(json.dumps(scores))
                summary = {m: float(np.mean(list(v.values()))) for m, v in scores.items()}
                (folder / "cell.json").write_text(json.dumps({
                    "cell": folder.name, "status": "done", "size": size, "alpha": alpha, "seed": seed,
                    "parameters": params, "best_step": 120, "capped": size == "M", "summary": summary}))


def _get(comparisons, label, metric):
    return next(c for c in comparisons if c.label == label and c.metric == metric)


@pytest.mark.slow
def test_planted_effects_are_found_and_absent_ones_are_not(tmp_path):
    write_cells(tmp_path)
    comparisons = analyse(load_study(tmp_path), draws=2000)
    cross = _get(comparisons, "S: alpha=0.5 - alpha=1", "cross_mAP")
    assert cross.significant and cross.result.mean_diff == pytest.approx(0.20, abs=0.02)
    assert cross.result.ci_low < 0.20 < cross.result.ci_high
    mono = _get(comparisons, "S: alpha=0.5 - alpha=1", "mono_mAP")
    assert mono.significant and mono.result.mean_diff == pytest.approx(-0.10, abs=0.02)
    narrowing = _get(comparisons, "(alpha=0.5 - monolingual) at M minus at S", "mono_mAP")
    assert narrowing.significant and narrowing.result.mean_diff == pytest.approx(0.10, abs=0.02)
    steady = _get(comparisons, "(alpha=0.5 - monolingual) at M minus at S", "cross_mAP")
    assert not steady.significant
    null = [c for c in comparisons if c.metric in ("beir_ndcg10", "rank_distance", "same_language_top")]
    assert null and not any(c.significant for c in null)
    assert all(c.p_holm >= c.result.p_value for c in comparisons)


@pytest.mark.slow
def test_report_words_tables_and_plots_follow_the_numbers(tmp_path):
    write_cells(tmp_path, failed=[("M", 1.0, 3)])
    payload = write_report(tmp_path, draws=3000)
    text = (tmp_path / "report.md").read_text()
    assert "failed: M_a1_s3" in text
    assert "monolingual cost shrinks (the trade-off narrows)" in text
    assert "**S (0.030M)**, hybrid (alpha=0.5) vs monolingual batches" in text
    assert "X->Y mAP higher by 0.2" in text
    assert "8 of 17 cells were still improving" in text
    headline = next(l for l in text.splitlines() if l.startswith("| S (0.030M) | monolingual (α=1) |"))
    cross_cell = headline.split(" | ")[4]                   # the X->Y mAP column: planted +0.20
    assert cross_cell.startswith("0.2") and cross_cell.endswith("*")
    assert "BEIR-form nDCG@10 no significant difference" in text
    for name in ("frontier.png", "advantage.png", "bias.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # M alpha=1 has two seeds left: comparisons with it are paired over those two only.
    m_vs = [c for c in payload["comparisons"] if c["label"] == "M: alpha=0.5 - alpha=1"]
    assert m_vs and all(c["n_seeds"] == 2 for c in m_vs)
    assert len(payload["comparisons"]) == len({(c["label"], c["metric"]) for c in payload["comparisons"]})


def test_an_empty_study_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no finished cells"):
        load_study(tmp_path)
