"""Results files: a JSON record, a markdown table, and PNG plots.

Why it exists: a scaling study compares dozens of runs; each evaluation leaves one self-describing
``results.json`` (model, benchmark, settings, metrics, library versions, timings) that
``tools/scaling_report.py`` can gather, a ``results.md`` a person can paste, and plots where a grid
of numbers is better seen than read (the language x language mAP heatmap, per-language bars).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

_LIBRARIES = ("torch", "transformers", "sentence-transformers", "faiss-cpu", "faiss-gpu-cu12",
              "ir-measures", "pytrec-eval-terrier", "numpy", "megatron-hybridir")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _fmt(value, digits: int = 4) -> str:
    """A value for the table; None (a measure with nothing to measure) is "n/a"."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _nan(value) -> float:
    """None -> NaN for plots (matplotlib leaves NaN cells and bars empty)."""
    return float("nan") if value is None else value


def markdown(results: dict) -> str:
    lines = [f"# {results['benchmark']}: {results['model']}", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in results["metrics"].items()]
    matrix = results.get("matrix")
    if matrix:
        langs = matrix["languages"]
        lines += ["", "mAP, query language (rows) x candidate language (columns); `pool` = "
                  "multilingual pool", "",
                  "| q \\ c | " + " | ".join(langs) + " | pool |",
                  "|---" * (len(langs) + 2) + "|"]
        for i, lang in enumerate(langs):
            row = " | ".join(_fmt(v, 3) for v in matrix["map"][i])
            lines.append(f"| {lang} | {row} | {_fmt(matrix['pool'][i], 3)} |")
    per_language = results.get("per_language")
    if per_language:
        keys = sorted({k for v in per_language.values() for k in v})
        lines += ["", "| language | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for lang, vals in per_language.items():
            lines.append(f"| {lang} | " + " | ".join(_fmt(vals.get(k, "")) for k in keys) + " |")
    for note in results.get("notes", []):
        lines += ["", f"n/a: {note}"]
    timings = results.get("timings", {})
    if timings:
        lines += ["", "timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def plot(results: dict, folder: Path) -> list[Path]:
    """Heatmap of the language x language mAP matrix and per-language bars; returns the PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    matrix = results.get("matrix")
    if matrix:
        langs = matrix["languages"]
        grid = np.array([[_nan(v) for v in row] for row in matrix["map"]], dtype=float)
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(langs), 0.8 + 0.55 * len(langs)))
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(langs)), langs)
        ax.set_xlabel("candidate language")
        ax.set_ylabel("query language")
        for i in range(len(langs)):
            for j in range(len(langs)):
                ax.text(j, i, "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}",
                        ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.5 else "black")
        fig.colorbar(image, ax=ax, label="mAP")
        ax.set_title(f"{results['benchmark']} mAP")
        fig.tight_layout()
        written.append(folder / "map_heatmap.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    per_language = results.get("per_language")
    if per_language:
        langs = list(per_language)
        keys = [k for k in ("mono_mAP", "cross_mAP", "multi_mAP", "nDCG@10", "R@100")
                if any(k in v for v in per_language.values())]
        fig, axes = plt.subplots(1, 2 if "rank_distance" in next(iter(per_language.values())) else 1,
                                 figsize=(10, 3.5), squeeze=False)
        x = np.arange(len(langs))
        width = 0.8 / max(1, len(keys))
        for n, key in enumerate(keys):
            axes[0, 0].bar(x + n * width, [_nan(per_language[l].get(key)) for l in langs], width, label=key)
        axes[0, 0].set_xticks(x + width * (len(keys) - 1) / 2, langs)
        axes[0, 0].legend(fontsize=7)
        axes[0, 0].set_title("per query language")
        if axes.shape[1] == 2:
            axes[0, 1].bar(x, [_nan(per_language[l]["rank_distance"]) for l in langs], color="tab:red")
            axes[0, 1].set_xticks(x, langs)
            axes[0, 1].set_title("language bias: rank distance (lower is better)")
        fig.tight_layout()
        written.append(folder / "per_language.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def write_results(results: dict, folder: Path, plots: bool = True) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "results.json", "markdown": folder / "results.md"}
    # allow_nan=False: a NaN or inf would be written as non-JSON; n/a values are None (null).
    paths["json"].write_text(json.dumps(results, indent=2, sort_keys=False, allow_nan=False))
    paths["markdown"].write_text(markdown(results))
    if plots:
        for png in plot(results, folder):
            paths[png.stem] = png
    return paths
