"""The study's report: ``report.md`` (tables, every comparison with CI and p, the answer in words),
``report.json`` and the plots of ``study.plots``.

Why it exists: the question — how the monolingual vs cross-lingual trade-off of hybrid batches moves
as the model grows — must be answered from the numbers of the run at hand. Every sentence of the
"Findings" section is generated from the comparisons (nothing is hard-coded), and a claim is called
significant only when its Holm-adjusted p-value is below 0.05.
What it does not do: compute statistics (``study.analysis`` / ``study.stats``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from megatron_hybridir.study.analysis import (CROSS, MONO, Comparison, Study, analyse, cell_means,
                                              load_study)
from megatron_hybridir.study.scoring import LOWER_IS_BETTER, METRICS
from megatron_hybridir.study.stats import METHOD

NAMES = {"beir_ndcg10": "BEIR-form nDCG@10", "mono_mAP": "X->X mAP", "cross_mAP": "X->Y mAP",
         "multi_mAP": "pool mAP", "rank_distance": "rank distance",
         "same_language_top": "same-language top"}
MONO_SIDE, CROSS_SIDE = ("beir_ndcg10", "mono_mAP"), ("cross_mAP", "multi_mAP")


def _fmt(metric: str, value: float) -> str:
    return f"{value:.1f}" if metric == "rank_distance" else f"{value:.3f}"


def _size_label(study: Study, size: str) -> str:
    return f"{size} ({study.parameters[size] / 1e6:.3f}M)"


def means_table(study: Study) -> str:
    means = cell_means(study)
    capped = {}
    for c in study.cells:
        key = (c["size"], float(c["alpha"]))
        capped.setdefault(key, []).append((c["best_step"], c["capped"]))
    head = ["size (params)", "alpha", *[NAMES[m] for m in METRICS], "best step", "capped"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for size in study.sizes:
        for alpha in study.alphas:
            if (size, alpha) not in means:
                continue
            row = means[(size, alpha)]
            steps = capped[(size, alpha)]
            lines.append(f"| {_size_label(study, size)} | {alpha:g} | " + " | ".join(
                f"{_fmt(m, row[m][0])} ± {_fmt(m, row[m][1])}" for m in METRICS if m in row)
                + f" | {np.mean([s for s, _ in steps]):.0f} | {sum(c for _, c in steps)}/{len(steps)} |")
    return "\n".join(lines)


def comparisons_table(comparisons: list[Comparison], kinds: tuple[str, ...],
                      metrics: tuple[str, ...] = METRICS) -> str:
    head = ["comparison", "metric", "mean diff", "95% CI", "p", "p (Holm)", "per-seed diffs", "sig."]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for c in comparisons:
        if c.kind not in kinds or c.metric not in metrics:
            continue
        r = c.result
        mark = "**yes**" if c.significant else "no"
        lines.append(f"| {c.label} | {NAMES[c.metric]} | {_fmt(c.metric, r.mean_diff)} | "
                     f"[{_fmt(c.metric, r.ci_low)}, {_fmt(c.metric, r.ci_high)}] | {r.p_value:.4f} | "
                     f"{c.p_holm:.4f} | {', '.join(_fmt(c.metric, d) for d in r.per_seed)} | {mark} |")
    return "\n".join(lines)


def headline_table(study: Study, comparisons: list[Comparison]) -> str:
    """Per size: hybrid minus each baseline on every metric, as 'diff [CI]' (* = significant, Holm)."""
    head = ["size (params)", "hybrid (α=0.5) minus", *[NAMES[m] for m in METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for size in study.sizes:
        for kind, name in (("hybrid vs monolingual", "monolingual (α=1)"),
                           ("hybrid vs cross-lingual", "cross-lingual (α=0)")):
            row = []
            for metric in METRICS:
                c = _find(comparisons, kind, metric, size, 0.5)
                row.append("-" if c is None else
                           f"{_fmt(metric, c.result.mean_diff)} [{_fmt(metric, c.result.ci_low)}, "
                           f"{_fmt(metric, c.result.ci_high)}]{'*' if c.significant else ''}")
            lines.append(f"| {_size_label(study, size)} | {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _find(comparisons, kind, metric, size=None, alpha=None, label_has="") -> Optional[Comparison]:
    for c in comparisons:
        if (c.kind == kind and c.metric == metric and (size is None or c.size == size)
                and (alpha is None or c.alpha == alpha) and label_has in c.label):
            return c
    return None


def _say(c: Comparison, better: str, worse: str) -> str:
    """'better by 0.031 [0.020, 0.043], significant' from the metric's direction."""
    r = c.result
    ci = (f"95% CI {_fmt(c.metric, r.ci_low)} to {_fmt(c.metric, r.ci_high)}, "
          f"Holm p = {c.p_holm:.3g}")
    if not c.significant:
        return f"no significant difference ({_fmt(c.metric, r.mean_diff)}, {ci})"
    good = (r.mean_diff < 0) if c.metric in LOWER_IS_BETTER else (r.mean_diff > 0)
    return f"{better if good else worse} by {_fmt(c.metric, abs(r.mean_diff))} ({ci}, significant)"


def findings(study: Study, comparisons: list[Comparison]) -> list[str]:
    """The answer in words, generated from the comparisons."""
    out = []
    hybrids = [a for a in study.alphas if a not in (MONO, CROSS)]
    h = 0.5 if 0.5 in hybrids else (hybrids[0] if hybrids else None)
    if h is None or MONO not in study.alphas:
        return ["The grid has no hybrid alpha next to alpha=1; nothing to compare."]
    for size in study.sizes:
        parts = []
        for metric in ("beir_ndcg10", "mono_mAP", "cross_mAP", "multi_mAP", "rank_distance"):
            c = _find(comparisons, "hybrid vs monolingual", metric, size, h)
            if c:
                parts.append(f"{NAMES[metric]} {_say(c, 'higher' if metric not in LOWER_IS_BETTER else 'lower (less biased)', 'lower' if metric not in LOWER_IS_BETTER else 'higher (more biased)')}")
        if parts:
            out.append(f"**{_size_label(study, size)}**, hybrid (alpha={h:g}) vs monolingual batches: "
                       + "; ".join(parts) + ".")
        parts = []
        for metric in ("mono_mAP", "cross_mAP", "multi_mAP"):
            c = _find(comparisons, "hybrid vs cross-lingual", metric, size, h)
            if c:
                parts.append(f"{NAMES[metric]} {_say(c, 'higher', 'lower')}")
        if parts:
            out.append(f"Against cross-lingual batches at {size}: " + "; ".join(parts) + ".")
    out += _trend_sentences(study, comparisons, h)
    return out


def _trend_sentences(study: Study, comparisons: list[Comparison], h: float) -> list[str]:
    out = []
    for metric, side in (("mono_mAP", "monolingual cost"), ("beir_ndcg10", "monolingual cost"),
                         ("cross_mAP", "cross-lingual gain"), ("multi_mAP", "pool gain")):
        seq = [_find(comparisons, "hybrid vs monolingual", metric, s, h) for s in study.sizes]
        if any(c is None for c in seq):
            continue
        values = ", ".join(f"{s} {_fmt(metric, c.result.mean_diff):s}" for s, c in zip(study.sizes, seq))
        steps = []
        for small, large in zip(study.sizes, study.sizes[1:]):
            c = _find(comparisons, "advantage vs size", metric, f"{small}->{large}", h, "monolingual")
            if c is None:
                continue
            r = c.result
            verdict = _verdict(side, r.mean_diff, c.significant)
            steps.append(f"{small}->{large}: {verdict} ({_fmt(metric, r.mean_diff)}, CI "
                         f"{_fmt(metric, r.ci_low)} to {_fmt(metric, r.ci_high)}, Holm p = {c.p_holm:.3g})")
        out.append(f"Hybrid minus monolingual on {NAMES[metric]} ({side}) by size: {values}; "
                   + ("; ".join(steps) if steps else "one size only") + ".")
    bias = []
    for a in study.alphas:
        seq = [_find(comparisons, "size", "rank_distance", f"{s}->{l}", a)
               for s, l in zip(study.sizes, study.sizes[1:])]
        moves = [f"{c.size} {_fmt(c.metric, c.result.mean_diff)}{' (sig.)' if c.significant else ''}"
                 for c in seq if c]
        if moves:
            bias.append(f"alpha={a:g}: " + ", ".join(moves))
    if bias:
        out.append("Language bias (rank distance; negative = less biased at the larger size): "
                   + "; ".join(bias) + ".")
    return out


def _verdict(side: str, change: float, significant: bool) -> str:
    """Words for a change of (hybrid - monolingual) from one size to the next."""
    if not significant:
        return "no significant change"
    if side == "monolingual cost":
        return ("moves towards the hybrid: its monolingual cost shrinks (the trade-off narrows)"
                if change > 0 else "moves against the hybrid: its monolingual cost grows (the "
                                   "trade-off widens)")
    return ("the hybrid's lead over monolingual batches grows" if change > 0
            else "the hybrid's lead over monolingual batches shrinks")


def caveats(study: Study) -> str:
    capped = sum(bool(c["capped"]) for c in study.cells)
    return (f"{capped} of {len(study.cells)} cells were still improving on dev (or within patience) "
            f"at the step cap, so they may be under-trained; the budget rule could not be applied to "
            f"convergence there. " if capped else "Every cell stopped on its dev score before the cap. ") + (
        "These are models of 0.03M-0.4M parameters on a synthetic 6-language benchmark with random "
        "lexicons and three scripts: they show whether the tooling measures the trade-off and its "
        "statistics correctly, and how it behaves for tiny encoders trained from scratch. They say "
        "nothing reliable about 7B-30B models initialised from pretrained LLMs, which bring "
        "multilingual knowledge these models do not have; the Slurm plan (`--plan slurm`) runs the "
        "same study at that scale.")


def write_report(out: Path, *, draws: int = 10_000) -> dict:
    from megatron_hybridir.study import plots

    study = load_study(out)
    comparisons = analyse(study, draws=draws)
    grid = json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else {}
    failed = [json.loads(p.read_text())["cell"] for p in sorted(out.glob("cells/*/failed.json"))
              if not (p.parent / "cell.json").exists()]
    plots.frontier(study, out / "frontier.png")
    plots.advantage(study, comparisons, out / "advantage.png")
    plots.bias(study, out / "bias.png")
    text = "\n\n".join([
        "# Size x alpha study on the embedded benchmark",
        f"{len(study.cells)} cells ({len(study.sizes)} sizes x {len(study.alphas)} alphas x seeds)"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; wall time of the last grid invocation {grid['wall_s'] / 60:.1f} min (cells finished "
           f"by earlier invocations were skipped)" if grid.get("wall_s") else "") + ".",
        "## Headline: hybrid minus each baseline, mean difference [95% CI], * = significant (Holm)",
        headline_table(study, comparisons),
        "## Findings", "\n".join(f"- {s}" for s in findings(study, comparisons)),
        "## Caveat", caveats(study),
        "## Means over seeds (± population std)", means_table(study),
        "## Hybrid vs monolingual / cross-lingual batches",
        comparisons_table(comparisons, ("hybrid vs monolingual", "hybrid vs cross-lingual")),
        "## Each size vs the next", comparisons_table(comparisons, ("size",)),
        "## How the hybrid's advantage changes with size (difference of differences)",
        comparisons_table(comparisons, ("advantage vs size",)),
        "## Method", f"{METHOD.format(draws=draws)}; {len(comparisons)} comparisons in the family "
        "(CIs are unadjusted 95% intervals; 'significant' uses the Holm-adjusted p). "
        f"Queries per comparison: up to {max((c.result.n_queries for c in comparisons), default=0)} (every test "
        "question in every language, `<lang>:<id>`), paired across systems; seeds paired by seed "
        "number. Rank distance is in ranks of the 6-language pool (lower = less language bias).",
        "![frontier](frontier.png)\n\n![advantage](advantage.png)\n\n![bias](bias.png)"])
    (out / "report.md").write_text(text + "\n")
    payload = {"comparisons": [c.as_dict() for c in comparisons],
               "means": {f"{z}|{a:g}": v for (z, a), v in cell_means(study).items()},
               "parameters": study.parameters, "failed": failed, "grid": grid}
    (out / "report.json").write_text(json.dumps(payload, indent=2))
    print(text)
    return payload
