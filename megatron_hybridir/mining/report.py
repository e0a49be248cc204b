"""The mining report: what each filter removed, positive vs kept-negative scores, short items.

Why it exists: a miner that silently drops half its candidates to the margin, or leaves a language
with no negatives, must say so. Written next to the output as ``<output>.report.json`` and
``<output>.scores.png`` (score histograms per language: positives vs kept negatives), and printed.

What it does not do: mine.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def _distribution(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    if not len(values):
        return {"count": 0}
    return {"count": int(len(values)), "mean": float(values.mean()),
            "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))}}


def build_report(config, stats: dict, written: int, output: Path, *, echo: bool = True) -> dict:
    languages, arrays = {}, {}
    for lang, entry in stats.items():
        pos = np.concatenate(entry["positive_scores"]) if entry["positive_scores"] else np.zeros(0)
        neg = np.concatenate(entry["negative_scores"]) if entry["negative_scores"] else np.zeros(0)
        arrays[lang] = (pos, neg)
        languages[lang] = {
            "queries": entry["queries"], "candidates": entry["searched"],
            "removed": entry["removed"], "kept_negatives": int(len(neg)),
            f"items_with_fewer_than_{config.num_negatives}": entry["short"],
            "items_with_none": entry.get("empty", 0),
            "positive_scores": _distribution(pos), "negative_scores": _distribution(neg)}
    report = {"output": str(output), "records": written,
              "settings": {k: v for k, v in asdict(config).items() if k != "progress"},
              "languages": languages}
    Path(str(output) + ".report.json").write_text(json.dumps(report, indent=2))
    _plot(arrays, Path(str(output) + ".scores.png"))
    if config.progress and echo:
        print(summary(report, config.num_negatives))
    return report


def summary(report: dict, k: int) -> str:
    lines = [f"mined {report['records']} records -> {report['output']}"]
    for lang, entry in report["languages"].items():
        removed = ", ".join(f"{name} {count}" for name, count in entry["removed"].items())
        pos, neg = entry["positive_scores"], entry["negative_scores"]
        lines.append(f"  {lang}: {entry['queries']} queries, {entry['candidates']} candidates; "
                     f"removed: {removed or 'none'}; kept {entry['kept_negatives']}; "
                     f"{entry[f'items_with_fewer_than_{k}']} items with fewer than {k}; "
                     f"mean score positive {pos.get('mean', float('nan')):.3f} vs negatives "
                     f"{neg.get('mean', float('nan')):.3f}")
    return "\n".join(lines)


def _plot(arrays: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(arrays))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.8), squeeze=False)
    for ax, (lang, (pos, neg)) in zip(axes[0], arrays.items()):
        values = np.concatenate([pos, neg])
        values = values[np.isfinite(values)]
        bins = np.linspace(values.min(), values.max(), 30) if len(values) else 10
        ax.hist(pos[np.isfinite(pos)], bins=bins, alpha=0.6, density=True, label="positives")
        ax.hist(neg, bins=bins, alpha=0.6, density=True, label="kept negatives")
        ax.set_title(lang)
        ax.set_xlabel("score")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
