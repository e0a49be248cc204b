"""The monolingual / cross-lingual / hybrid comparison on the demo benchmark, and random vs mined
hard negatives (``tools/run_experiment.py``).

``run_experiment``: alpha = 1 (monolingual batches), 0 (cross-lingual) and 0.5 (hybrid), several
seeds each, the same step budget, every run evaluated on the demo test set; writes a table with
mean ± std over seeds and a trade-off plot (monolingual vs cross-lingual mAP, language-bias bars).

``run_negatives_experiment``: random vs mined hard negatives under hybrid batches (alpha 0.5),
several seeds, the same total step budget (the mined arm spends its first steps on the first pass
that mines); writes experiment_negatives.md / .json with mean ± std and the negatives' quality.

Each run goes through the demo pipeline's steps (``demo/pipeline``: data, training under torchrun,
export, evaluation). What it does not do: statistics across sizes (``study.grid`` / ``study.report``)
or the scaling report (``study.scaling``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from megatron_hybridir.demo.pipeline import (export_and_evaluate, first_pass_and_mine, log,
                                              prepare_data, train)
from megatron_hybridir.evaluation.metrics import LAREQA_SUMMARY

METRICS = LAREQA_SUMMARY
ALPHA_NAMES = {1.0: "monolingual (alpha=1)", 0.0: "cross-lingual (alpha=0)", 0.5: "hybrid (alpha=0.5)"}


def run_experiment(out: Path, *, alphas: Sequence[float] = (1.0, 0.0, 0.5), seeds: Sequence[int] = (1, 2, 3),
                   steps: int = 300, overrides: Sequence[str] = ()) -> dict:
    data = prepare_data(out / "data")
    results: dict[float, list[dict]] = {}
    for alpha in alphas:
        for seed in seeds:
            run_dir = out / f"alpha{alpha:g}_seed{seed}"
            done = run_dir / "eval" / "results.json"
            if not done.exists():
                log(f"run alpha={alpha:g} seed={seed}")
                train(run_dir, data, [f"data.alpha={alpha}", f"seed={seed}",
                                      f"training.train_steps={steps}", *overrides])
                export_and_evaluate(run_dir, data)
            results.setdefault(alpha, []).append(json.loads(done.read_text())["metrics"])
    summary, table = summarize({ALPHA_NAMES.get(a, f"alpha={a:g}"): rs for a, rs in results.items()},
                               "batches")
    text = (f"{len(seeds)} seeds x {steps} steps each; mean ± std over seeds (population std)\n\n"
            + "\n".join(table) + "\n")
    (out / "experiment.md").write_text(text)
    (out / "experiment.json").write_text(json.dumps({"summary": summary, "runs": {str(a): r for a, r in results.items()}},
                                                    indent=2))
    _tradeoff_plot(results, out / "tradeoff.png")
    print(text)
    return summary


def summarize(runs: dict[str, list[dict]], label: str) -> tuple[dict, list[str]]:
    """{name: {metric: (mean, population std)}} over seeds, and its markdown table."""
    summary = {name: {m: (float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs])))
                      for m in METRICS} for name, rs in runs.items()}
    table = [f"| {label} | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name, values in summary.items():
        table.append(f"| {name} | " + " | ".join(
            f"{mean:.1f} ± {std:.1f}" if m == "rank_distance" else f"{mean:.3f} ± {std:.3f}"
            for m, (mean, std) in values.items()) + " |")
    return summary, table


def run_negatives_experiment(out: Path, *, seeds: Sequence[int] = (1, 2, 3), steps: int = 300,
                             first_steps: int = 100, overrides: Sequence[str] = ()) -> dict:
    """Random vs mined hard negatives, hybrid batches, ``steps`` training steps per run in all."""
    from megatron_hybridir.demo import mining

    if not 0 < first_steps < steps:
        raise ValueError(f"first_steps must lie in (0, steps={steps}), got {first_steps}")
    data = prepare_data(out / "data")
    results: dict[str, list[dict]] = {"random negatives": [], "mined negatives": []}
    quality: dict[str, list[dict]] = {"random negatives": [], "mined negatives": []}
    for seed in seeds:
        base = ["data.alpha=0.5", f"seed={seed}", *overrides]
        for arm in results:
            run_dir = out / f"{arm.split()[0]}_seed{seed}"
            done = run_dir / "eval" / "results.json"
            if arm == "random negatives":
                arm_data = mining.random_negative_data(data, seed=seed)
                source, extra = Path(arm_data.indexed).parent / f"train.random{seed}.jsonl", []
            else:
                arm_data = first_pass_and_mine(out / f"first_pass_seed{seed}", data, base,
                                               steps=first_steps, seed=seed)
                source = out / f"first_pass_seed{seed}" / "mined" / "train.mined.jsonl"
                # from the first pass's weights, not demo_cpu.yaml's random initialisation
                extra = [f"checkpoint.init_from={arm_data.init_from}", "checkpoint.init=pretrained"]
            if not done.exists():
                log(f"run {arm} seed={seed}")
                run_steps = steps if arm == "random negatives" else steps - first_steps
                train(run_dir, arm_data, [*base, f"training.train_steps={run_steps}", *extra])
                export_and_evaluate(run_dir, arm_data)
            results[arm].append(json.loads(done.read_text())["metrics"])
            quality[arm].append(mining.negative_quality(source, languages=list(data.languages)))
    summary, table = summarize(results, "hybrid batches (alpha=0.5)")
    hard = {arm: {k: float(np.mean([v[k] for q in qs for v in q.values()]))
                  for k in ("names_entity", "names_relation", "contains_answer")}
            for arm, qs in quality.items()}
    text = (f"{len(seeds)} seeds x {steps} steps each (mined: {first_steps}-step first pass with "
            f"in-batch negatives, then {steps - first_steps} steps on its mined negatives); "
            f"mean ± std over seeds (population std)\n\n" + "\n".join(table) + "\n\n"
            + "negatives naming the query's entity / its relation / containing its answer: "
            + ", ".join(f"{arm} {h['names_entity']:.2f} / {h['names_relation']:.2f} / "
                        f"{h['contains_answer']:.3f}"
                for arm, h in hard.items()) + "\n")
    (out / "experiment_negatives.md").write_text(text)
    (out / "experiment_negatives.json").write_text(json.dumps(
        {"summary": summary, "negatives": hard, "runs": results}, indent=2))
    print(text)
    return summary


def _tradeoff_plot(results: dict[float, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for n, (alpha, runs) in enumerate(results.items()):
        name = ALPHA_NAMES.get(alpha, f"alpha={alpha:g}")
        mono = [r["mono_mAP"] for r in runs]
        cross = [r["cross_mAP"] for r in runs]
        left.scatter(mono, cross, alpha=0.4, color=f"C{n}")
        left.errorbar(np.mean(mono), np.mean(cross), xerr=np.std(mono), yerr=np.std(cross), fmt="o",
                      color=f"C{n}", label=name, capsize=3)
        bias = [r["rank_distance"] for r in runs]
        right.bar(n, np.mean(bias), yerr=np.std(bias), color=f"C{n}", capsize=3)
    left.set_xlabel("monolingual mAP (X->X)")
    left.set_ylabel("cross-lingual mAP (X->Y)")
    left.legend(fontsize=8)
    left.set_title("trade-off (dots: seeds; error bars: ±1 std)")
    right.set_xticks(range(len(results)), [ALPHA_NAMES.get(a, str(a)) for a in results], fontsize=7)
    right.set_ylabel("rank distance (lower = less language bias)")
    right.set_title("language bias in the multilingual pool")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
