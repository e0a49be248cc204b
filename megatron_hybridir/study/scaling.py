"""``scaling_report``: evaluation ``results.json`` files of several sizes (and alphas, seeds) into a
table and plots of each metric against parameters and training FLOPs.

Why it exists: the last job of the Slurm study (``study.slurm``) and ``tools/scaling_report.py``
gather the evaluations of every cell. Each file carries ``run_info`` (parameters, training FLOPs,
alpha, seed; ``training.run_summary.run_info`` reads them off a run directory, and the demo pipeline and
``study.slurm annotate`` write them). Rows are models — (parameters,
FLOPs, alpha) — so several benchmarks of one model share a row; columns are ``<benchmark>:<metric>``
so XQuAD-R and MLQA-R mAP, or BEIR and MIRACL nDCG@10, never mix (a file without a ``benchmark``
field keeps the plain metric name). Several files of one benchmark and seed (BEIR datasets) are
averaged; seeds give mean ± std. What it does not do: significance (``study.report`` for the
CPU study, ``study.cluster_report`` from the evaluations' per-query tables for the Slurm study).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

DEFAULT_METRICS = ("mono_mAP", "cross_mAP", "multi_mAP", "rank_distance", "nDCG@10", "top20")


def _collect(result_files: Sequence[Path], metrics: Sequence[str]) -> dict:
    rows: dict[tuple, dict] = {}
    for path in result_files:
        result = json.loads(Path(path).read_text())
        info = result.get("run_info") or {}
        if "parameters" not in info:
            raise ValueError(f"{path}: no run_info.parameters (evaluate runs through the demo pipeline, "
                             f"or `python -m megatron_hybridir.study.slurm annotate RUN_DIR {path}`)")
        key = (info["parameters"], info.get("train_flops", 0.0), info.get("alpha"))
        row = rows.setdefault(key, {"model": result.get("model", ""), "values": {}})
        bench = result.get("benchmark")
        for metric, value in result.get("metrics", {}).items():
            if metric in metrics and value is not None:      # None: n/a for this benchmark run
                column = f"{bench}:{metric}" if bench else metric
                row["values"].setdefault(column, {}).setdefault(info.get("seed"), []).append(value)
    return rows


def scaling_report(result_files: Sequence[Path], out: Path,
                   metrics: Sequence[str] = DEFAULT_METRICS) -> list[dict]:
    """Write ``scaling.md`` and ``scaling.png`` into ``out``; returns the rows (ascending size)."""
    table = []
    for (params, flops, alpha), row in _collect(result_files, metrics).items():
        entry = {"model": row["model"], "parameters": params, "train_flops": flops, "alpha": alpha}
        for column, per_seed in row["values"].items():
            seed_means = [float(np.mean(v)) for v in per_seed.values()]
            entry[column] = float(np.mean(seed_means))
            entry[column + " std"] = float(np.std(seed_means))
            entry[column + " seeds"] = len(seed_means)
        table.append(entry)
    table.sort(key=lambda r: (r["parameters"], r["alpha"] if r["alpha"] is not None else -1))
    columns = sorted({k for r in table for k in r if k.split(":")[-1] in metrics and " " not in k})
    out.mkdir(parents=True, exist_ok=True)
    with_alpha = any(r["alpha"] is not None for r in table)
    head = ["parameters", "train FLOPs", *(["alpha"] if with_alpha else []), *columns]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in table:
        cells = [f"{r['parameters'] / 1e6:.2f}M", f"{r['train_flops']:.2e}"]
        if with_alpha:
            cells.append("-" if r["alpha"] is None else f"{r['alpha']:g}")
        cells += [_cell(r, c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    _plot(table, columns, out / "scaling.png")
    print("\n".join(lines))
    return table


def _cell(row: dict, column: str) -> str:
    if column not in row:
        return "-"
    fmt = "{:.1f}" if column.endswith("rank_distance") else "{:.3f}"
    text = fmt.format(row[column])
    return text + (" ± " + fmt.format(row[column + " std"]) if row[column + " seeds"] > 1 else "")


def _plot(table: list[dict], columns: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    alphas: list[Optional[float]] = sorted({r["alpha"] for r in table}, key=lambda a: -1 if a is None else a)
    for ax, x_key, label in ((axes[0], "parameters", "parameters"), (axes[1], "train_flops", "training FLOPs")):
        for m in columns:
            if m.endswith("rank_distance"):
                continue
            for n, alpha in enumerate(alphas):
                pts = [(r[x_key], r[m]) for r in table if m in r and r["alpha"] == alpha]
                if pts:
                    name = m if alpha is None else f"{m} (α={alpha:g})"
                    ax.plot(*zip(*pts), marker="o", linestyle=["-", "--", ":", "-."][n % 4], label=name)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("metric")
        ax.legend(fontsize=6)
    axes[0].set_title("monolingual vs cross-lingual / multilingual metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
