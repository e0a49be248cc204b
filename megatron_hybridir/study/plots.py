"""Plots of the study (matplotlib, Agg): the frontier per size, the hybrid's advantage and the
language bias against model size.

Why it exists: the report's pictures; each takes the numbers from ``study.analysis`` and draws them,
nothing more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megatron_hybridir.study.analysis import CROSS, MONO, Comparison, Study, cell_means


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def frontier(study: Study, path: Path) -> None:
    """Monolingual vs cross-lingual score traced by alpha, one curve per size (±1 std over seeds)."""
    plt = _plt()
    means = cell_means(study)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (x_m, y_m, x_label, y_label) in zip(axes, (
            ("mono_mAP", "cross_mAP", "monolingual X->X mAP (LAReQA form)", "cross-lingual X->Y mAP"),
            ("beir_ndcg10", "multi_mAP", "monolingual nDCG@10 (BEIR form)", "multilingual pool mAP"))):
        for n, size in enumerate(study.sizes):
            alphas = [a for a in study.alphas if (size, a) in means]
            xs = [means[(size, a)][x_m][0] for a in alphas]
            ys = [means[(size, a)][y_m][0] for a in alphas]
            ax.errorbar(xs, ys, xerr=[means[(size, a)][x_m][1] for a in alphas],
                        yerr=[means[(size, a)][y_m][1] for a in alphas], marker="o", capsize=3,
                        color=f"C{n}", label=f"{size} ({study.parameters[size] / 1e6:.2f}M)")
            for a, x, y in zip(alphas, xs, ys):
                ax.annotate(f"α={a:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(fontsize=8)
    axes[0].set_title("trade-off frontier traced by alpha, per size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def advantage(study: Study, comparisons: list[Comparison], path: Path) -> None:
    """Hybrid minus monolingual / cross-lingual batches per metric against parameters, 95% CIs."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    metrics = ("beir_ndcg10", "mono_mAP", "cross_mAP", "multi_mAP")
    params = np.array([study.parameters[s] for s in study.sizes], dtype=float)
    for ax, kind in zip(axes, ("hybrid vs monolingual", "hybrid vs cross-lingual")):
        for n, metric in enumerate(metrics):
            rows = [next((c for c in comparisons if c.kind == kind and c.metric == metric
                          and c.size == s and c.alpha == 0.5), None) for s in study.sizes]
            pts = [(p * (1 + 0.04 * (n - 1.5)), c.result) for p, c in zip(params, rows) if c]
            if not pts:
                continue
            x = [p for p, _ in pts]
            y = np.array([r.mean_diff for _, r in pts])
            err = np.array([[r.mean_diff - r.ci_low for _, r in pts], [r.ci_high - r.mean_diff for _, r in pts]])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=metric, color=f"C{n}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(f"{kind} (alpha=0.5); 95% CI")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("difference (hybrid - baseline)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bias(study: Study, path: Path) -> None:
    """Language-bias measures per alpha against parameters (±1 std over seeds)."""
    plt = _plt()
    means = cell_means(study)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    names = {MONO: "monolingual (α=1)", CROSS: "cross-lingual (α=0)"}
    for ax, metric, label in ((axes[0], "rank_distance", "rank distance (lower = less bias)"),
                              (axes[1], "same_language_top", "best relevant hit in query's language")):
        for n, a in enumerate(study.alphas):
            sizes = [s for s in study.sizes if (s, a) in means]
            ax.errorbar([study.parameters[s] for s in sizes], [means[(s, a)][metric][0] for s in sizes],
                        yerr=[means[(s, a)][metric][1] for s in sizes], marker="o", capsize=3,
                        label=names.get(a, f"hybrid (α={a:g})"), color=f"C{n}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0].set_title("language bias in the multilingual pool vs size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
