"""The per-query score tables of the Slurm study's cells, checked before any statistic is drawn.

Why it exists: the cluster report (``study.cluster_report``) runs the CPU study's paired bootstrap
(``study.analysis`` / ``study.stats``) on the ``per_query.jsonl`` every evaluation writes. A wrong
result is worse than a crash, so a cell is only used when its evaluations belong to this plan
(``run_info.study`` = the plan's study id, alpha and seed = the cell's), its tables agree with its
``results.json`` (a stale table is refused), and every cell has the same queries per metric.
Missing evaluations are listed by name, not guessed.

The study's metrics per cell (query keys in brackets), from each evaluation folder ``<name>``:
``<name>:nDCG@10`` for BEIR (``qid``), ``nq:top20`` / ``nq:top100`` (``qid``),
``miracl:nDCG@10`` (``<lang>:<qid>``, pooled over languages), and for XQuAD-R / MLQA-R
(``<lang>:<qid>``) ``mono_mAP`` (AP in X->X), ``cross_mAP`` (the query's mean AP over its X->Y
settings), ``multi_mAP`` (AP in the pool), ``rank_distance`` and ``same_language_top`` -- the
per-query definitions of ``study.scoring``. Means over pooled queries equal the results.json
numbers when every language has the same queries (XQuAD-R); otherwise they weight languages by
their query counts. What it does not do: statistics or text (``study.cluster_report``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from megatron_hybridir.evaluation.metrics import LAREQA_SUMMARY
from megatron_hybridir.evaluation.per_query import TABLE, read_table, setting_means

LAREQA = ("xquad-r", "mlqa-r", "lareqa")
TOLERANCE = 1e-9


class StudyDataError(ValueError):
    """A cell's files do not belong to this study or disagree with each other."""


@dataclass
class Cell:
    name: str            # run directory name, <size>_a<alpha>_s<seed>
    size: str
    alpha: float
    seed: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)   # metric -> query -> value
    train_steps: int | None = None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(1.0, abs(b))


def _check_means(path: Path, results: dict, table: dict) -> None:
    """The table's setting means must be the numbers results.json reports."""
    means = setting_means(table)
    expected = {}
    if results.get("settings"):                                           # LAReQA
        # A setting without queries has no rows (rank_metrics reports 0 for it).
        expected = {(s, "AP"): v["mAP"] for s, v in results["settings"].items() if v.get("queries", 1)}
        langs = results["matrix"]["languages"]
        expected.update({(f"pool:{a}", "AP"): v for a, v in zip(langs, results["matrix"]["pool"])})
    elif results.get("per_language"):                                     # MIRACL
        expected = {(lang, m): v for lang, row in results["per_language"].items() for m, v in row.items()}
    else:
        expected = {("all", m): v for m, v in results["metrics"].items()}
    for (setting, metric), value in expected.items():
        if value is None:                       # n/a in results.json: nothing to compare
            continue
        got = means.get(setting, {}).get(metric)
        if got is None or not _close(got, value):
            raise StudyDataError(f"{path}: {TABLE} gives {setting} {metric} = {got}, results.json "
                                 f"says {value}: the table is stale or from another evaluation")


def _study_metrics(name: str, benchmark: str, table: dict) -> dict[str, dict[str, float]]:
    if benchmark in LAREQA:
        langs = sorted({s.split(":", 1)[1] for s in table if s.startswith("pool:")})
        out: dict[str, dict[str, float]] = {f"{name}:{m}": {} for m in LAREQA_SUMMARY}
        for a in langs:
            for q, v in table.get(f"{a}->{a}", {}).get("AP", {}).items():
                out[f"{name}:mono_mAP"][f"{a}:{q}"] = v
            cross: dict[str, list[float]] = {}
            for b in langs:
                if b != a:
                    for q, v in table.get(f"{a}->{b}", {}).get("AP", {}).items():
                        cross.setdefault(q, []).append(v)
            out[f"{name}:cross_mAP"].update({f"{a}:{q}": float(np.mean(v)) for q, v in cross.items()})
            out[f"{name}:multi_mAP"].update({f"{a}:{q}": v for q, v in table[f"pool:{a}"]["AP"].items()})
            for m in ("rank_distance", "same_language_top"):
                out[f"{name}:{m}"].update({f"{a}:{q}": v for q, v in
                                           table.get(f"bias:{a}", {}).get(m, {}).items()})
        return {m: v for m, v in out.items() if v}
    if benchmark == "miracl":
        return {f"{name}:nDCG@10": {f"{lang}:{q}": v for lang, row in table.items()
                                    for q, v in row["nDCG@10"].items()}}
    wanted = ("top20", "top100") if benchmark == "nq" else ("nDCG@10",)
    return {f"{name}:{m}": table["all"][m] for m in wanted if m in table.get("all", {})}


def load_cell(out: Path, cell: Cell, evaluations: list[str], study_id: str) -> list[str]:
    """Fill ``cell.scores``; returns the evaluations missing from it (``<cell>: eval/<name>``)."""
    missing = []
    for name in evaluations:
        folder = out / "runs" / cell.name / "eval" / name
        if not (folder / "results.json").is_file() or not (folder / TABLE).is_file():
            missing.append(f"{cell.name}: eval/{name}")
            continue
        results = json.loads((folder / "results.json").read_text())
        info = results.get("run_info") or {}
        if info.get("study") != study_id:
            raise StudyDataError(f"{folder}/results.json: run_info.study is {info.get('study')!r}, this "
                                 f"study is {study_id!r} ({out}/plan.json): the cell was evaluated "
                                 f"under another plan (or not annotated)")
        if float(info.get("alpha", "nan")) != cell.alpha or int(info.get("seed", -1)) != cell.seed:
            raise StudyDataError(f"{folder}/results.json: run_info alpha {info.get('alpha')}, seed "
                                 f"{info.get('seed')}; the cell {cell.name} is alpha {cell.alpha:g}, "
                                 f"seed {cell.seed}")
        table = read_table(folder / TABLE)
        _check_means(folder, results, table)
        cell.scores.update(_study_metrics(name, results.get("benchmark", ""), table))
        cell.train_steps = info.get("train_steps", cell.train_steps)
    return missing


def check_query_sets(cells: list[Cell]) -> None:
    """Every cell must score each metric on the same queries (paired tests need it)."""
    reference: dict[str, Cell] = {}
    for cell in cells:
        for metric, values in cell.scores.items():
            ref = reference.setdefault(metric, cell)
            if set(values) != set(ref.scores[metric]):
                only = sorted(set(values) ^ set(ref.scores[metric]))
                raise StudyDataError(
                    f"{metric}: cell {cell.name} has {len(values)} queries, cell {ref.name} "
                    f"{len(ref.scores[metric])}; {len(only)} differ (e.g. {only[:3]}): the cells were "
                    f"evaluated on different query sets")
