"""The Slurm study's report: every size x alpha comparison of every benchmark metric with the CPU
study's paired bootstrap over queries and seeds and Holm's correction, as markdown, JSON and a plot.

Why it exists: the last job of the plan (``report.sbatch``, or by hand
``tools/run_study.py --plan slurm --report-only --out <study>``) must answer the study's question
with confidence intervals, not with means. Cells (``<out>/runs/<size>_a<alpha>_s<seed>``) come
from ``plan.json``; their per-query tables are read and checked by ``study.cluster_tables``; the
comparisons are ``study.analysis.analyse``'s (hybrid alpha vs alpha=1 and alpha=0 per size, each
size vs the next per alpha, the hybrid's advantage vs size), run per metric so that a cell missing
one evaluation drops only that metric's seed, and Holm-adjusted over the whole report. The budget
rule of each cell (``study.slurm``: a fixed budget) is printed with the steps it reached.
What it does not do: read the CPU study's cells (``study.report``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from megatron_hybridir.study.analysis import Comparison, Study, analyse
from megatron_hybridir.study.cluster_tables import Cell, StudyDataError, check_query_sets, load_cell
from megatron_hybridir.study.stats import METHOD, holm, paired_bootstrap_diff


def load_cells(out: Path) -> tuple[dict, list[Cell], list[str]]:
    """(plan, cells with at least one evaluation, missing evaluations by name)."""
    if not (out / "plan.json").is_file():
        raise FileNotFoundError(f"{out}/plan.json: not a Slurm study folder (tools/run_study.py --plan slurm)")
    plan = json.loads((out / "plan.json").read_text())
    config = plan["config"]
    cells, missing = [], []
    for size in config["sizes"]:
        for alpha in config["alphas"]:
            for seed in config["seeds"]:
                cell = Cell(f"{size}_a{alpha:g}_s{seed}", size, float(alpha), int(seed))
                missing += load_cell(out, cell, plan["evaluations"], plan["study_id"])
                if cell.scores:
                    cells.append(cell)
    if not cells:
        raise StudyDataError(f"{out}: no evaluated cell ({len(missing)} evaluations missing, e.g. "
                             f"{missing[:3]})")
    check_query_sets(cells)
    return plan, cells, missing


def compare(plan: dict, cells: list[Cell], draws: int) -> list[Comparison]:
    """``analyse`` per metric (each metric over the cells that have it), Holm over all of them."""
    sizes = plan["config"]["sizes"]
    params = {c["size"]: c["parameters"] for c in plan["cells"]}
    alphas = sorted({float(a) for a in plan["config"]["alphas"]})
    comparisons: list[Comparison] = []
    for metric in sorted({m for c in cells for m in c.scores}):
        scores = {(c.size, c.alpha, c.seed): {metric: c.scores[metric]} for c in cells if metric in c.scores}
        comparisons += analyse(Study([], sizes, params, alphas, scores), draws=draws, metrics=(metric,))
    for c, p in zip(comparisons, holm([c.result.p_value for c in comparisons])):
        c.p_holm = p
    return comparisons


def cell_means(cells: list[Cell], draws: int) -> dict[tuple[str, str, float], dict]:
    """(metric, size, alpha) -> mean over seeds and queries with its bootstrap 95% CI."""
    out = {}
    groups: dict[tuple[str, str, float], list[Cell]] = {}
    for c in cells:
        for metric in c.scores:
            groups.setdefault((metric, c.size, c.alpha), []).append(c)
    for (metric, size, alpha), group in sorted(groups.items()):
        queries = sorted(group[0].scores[metric])
        table = np.array([[c.scores[metric][q] for q in queries] for c in group])   # [seeds, queries]
        r = paired_bootstrap_diff(table, draws=draws)
        out[(metric, size, alpha)] = {"mean": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                      "seeds": len(group), "queries": len(queries)}
    return out


def plot(means: dict, sizes: list[str], path: Path) -> None:
    """One panel per metric: the metric against alpha, one line per size, 95% CIs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({m for m, _, _ in means})
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for n, size in enumerate(sizes):
            pts = sorted((a, v) for (m, z, a), v in means.items() if m == metric and z == size)
            if pts:
                xs = [a for a, _ in pts]
                ys = np.array([v["mean"] for _, v in pts])
                err = [ys - [v["ci_low"] for _, v in pts], [v["ci_high"] for _, v in pts] - ys]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=f"C{n}", label=size)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("alpha (1 = monolingual batches)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _comparison_rows(comparisons: list[Comparison]) -> list[str]:
    lines = ["| comparison | metric | mean diff | 95% CI | p | p (Holm) | per-seed diffs | sig. |",
             "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        r = c.result
        lines.append(f"| {c.label} | {c.metric} | {r.mean_diff:.4f} | [{r.ci_low:.4f}, {r.ci_high:.4f}] | "
                     f"{r.p_value:.4f} | {c.p_holm:.4f} | {', '.join(f'{d:.4f}' for d in r.per_seed)} | "
                     f"{'**yes**' if c.significant else 'no'} |")
    return lines


def _budget_rows(plan: dict, cells: list[Cell]) -> list[str]:
    budget = plan["budget"]
    lines = [f"Rule: **{budget['rule']}** -- {budget['about']}.", "",
             "| cell | rule | budget (steps) | steps reached |", "|---|---|---|---|"]
    for c in cells:
        target = budget["train_steps"][c.size]
        note = "" if c.train_steps == target else " (**differs from the budget**)"
        lines.append(f"| {c.name} | {budget['rule']} | {target} | {c.train_steps}{note} |")
    return lines


def write_cluster_report(out: Path, *, draws: int = 10_000) -> dict:
    """Write ``report.md``, ``report.json`` and ``report.png`` into ``out``."""
    plan, cells, missing = load_cells(Path(out))
    comparisons = compare(plan, cells, draws)
    means = cell_means(cells, draws)
    plot(means, plan["config"]["sizes"], out / "report.png")
    mean_rows = ["| metric | size | alpha | mean [95% CI] | seeds | queries |", "|---|---|---|---|---|---|"]
    mean_rows += [f"| {m} | {z} | {a:g} | {v['mean']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}] | "
                  f"{v['seeds']} | {v['queries']} |" for (m, z, a), v in means.items()]
    text = "\n\n".join([
        f"# Size x alpha study (Slurm), study `{plan['study_id']}`",
        f"{len(cells)} cells evaluated; missing evaluations: "
        + (", ".join(missing) if missing else "none") + ".",
        "## Budget rule", "\n".join(_budget_rows(plan, cells)),
        "## Means over seeds and queries", "\n".join(mean_rows),
        "## Comparisons (every size x alpha comparison, every metric)", "\n".join(_comparison_rows(comparisons)),
        "## Method", f"{METHOD.format(draws=draws)}; {len(comparisons)} comparisons in the family "
        "(CIs unadjusted 95%; 'sig.' = Holm-adjusted p < 0.05). Queries are paired across cells, seeds "
        "by seed number; LAReQA and MIRACL queries are `<lang>:<id>` pooled over languages "
        "(study.cluster_tables).", "![metrics vs alpha](report.png)"])
    (out / "report.md").write_text(text + "\n")
    payload = {"study_id": plan["study_id"], "budget": plan["budget"], "missing": missing,
               "cells": [{"name": c.name, "size": c.size, "alpha": c.alpha, "seed": c.seed,
                          "train_steps": c.train_steps, "rule": plan["budget"]["rule"]} for c in cells],
               "comparisons": [c.as_dict() for c in comparisons],
               "means": [{"metric": m, "size": z, "alpha": a, **v} for (m, z, a), v in means.items()]}
    (out / "report.json").write_text(json.dumps(payload, indent=2))
    print(text)
    return payload
