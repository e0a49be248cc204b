"""The scaling report gathers evaluation results of several model sizes into a table and plots."""

import json

import pytest

from megatron_hybridir.study.scaling import scaling_report


def _result(path, params, flops, mono, cross, ndcg=None):
    metrics = {"mono_mAP": mono, "cross_mAP": cross, "multi_mAP": cross / 2, "rank_distance": 100.0}
    if ndcg is not None:
        metrics = {"nDCG@10": ndcg}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": f"m{params}", "metrics": metrics,
                                "run_info": {"parameters": params, "train_flops": flops}}))
    return path


@pytest.mark.slow
def test_scaling_report_merges_benchmarks_per_model(tmp_path):
    files = [_result(tmp_path / f"s{n}" / "lareqa.json", p, p * 1e6, 0.5 + n / 10, 0.2 + n / 10)
             for n, p in enumerate([3e6, 1e6, 2e6])]
    files.append(_result(tmp_path / "s1" / "beir.json", 1e6, 1e12, 0, 0, ndcg=0.4))
    table = scaling_report(files, tmp_path / "out")
    assert [r["parameters"] for r in table] == [1e6, 2e6, 3e6]
    assert table[0]["nDCG@10"] == 0.4 and table[0]["mono_mAP"] == pytest.approx(0.6)
    text = (tmp_path / "out" / "scaling.md").read_text()
    assert "| 1.00M |" in text and "nDCG@10" in text
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 0


def test_scaling_report_names_a_result_without_run_info(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"model": "x", "metrics": {}}))
    with pytest.raises(ValueError, match="r.json: no run_info.parameters"):
        scaling_report([bad], tmp_path / "out")


@pytest.mark.slow
def test_n_a_values_are_left_out_not_averaged(tmp_path):
    # A one-language LAReQA run reports cross / pool / bias as null (n/a): it must neither crash
    # the report nor enter a mean; a second seed of the same size with numbers is averaged alone.
    one_lang = _result(tmp_path / "a" / "r.json", 1e6, 1e12, 0.5, 0.2)
    data = json.loads(one_lang.read_text())
    data["metrics"].update(cross_mAP=None, multi_mAP=None, rank_distance=None)
    data["run_info"]["seed"] = 1
    one_lang.write_text(json.dumps(data))
    other = _result(tmp_path / "b" / "r.json", 1e6, 1e12, 0.7, 0.3)
    data = json.loads(other.read_text())
    data["run_info"]["seed"] = 2
    other.write_text(json.dumps(data))
    [row] = scaling_report([one_lang, other], tmp_path / "out")
    assert row["mono_mAP"] == pytest.approx(0.6)
    assert row["cross_mAP"] == pytest.approx(0.3)          # seed 2 alone, not (None + 0.3) / 2
