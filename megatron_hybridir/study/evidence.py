"""Issue 28's three comparisons on the demo benchmark, with paired statistics
(``tools/run_experiment.py --compare distillation|sources|merge``).

Why it exists: distillation, same-source batches and checkpoint merging are options a user will
ask about; whether any of them helps on the demo is a measurement, not a claim. Each comparison
trains its arms over the same seeds and step budget (``demo/pipeline``: torchrun, the real entry
point), scores every arm on the demo test split per query (``study.scoring``: BEIR-form nDCG@10,
LAReQA mono / cross / multilingual mAP, the bias measures) and tests the contrast with the study's
paired bootstrap over queries and seeds, Holm-adjusted over the metrics of the table
(``study.stats``):

- ``distillation``: a teacher (the demo model trained ``teacher_steps``, longer than the students)
  mines ``train.jsonl`` and writes teacher scores (the miner's ``--teacher bi-encoder`` path);
  students train on those mined records with ``loss.distillation`` (KL, weight ``weight``, the
  teacher's cosines at the student's temperature) and without (weight 0), same data, same steps.
- ``sources``: the demo generator's second source (its own question / passage style) next to the
  first; hybrid batches drawn from one source each (``data.same_source_batches=true``) vs mixed.
- ``merge``: per seed, alpha = 1 and alpha = 0 runs (same seed: same initial weights) merged
  linearly 0.5 / 0.5 (``convert/merge.py``) vs the alpha = 0.5 run of that seed.

Runs whose ``scores.json`` exists are reused, so a rerun only does what is missing. What it does not
do: choose steps for the user or claim a winner; the table prints the difference, its 95% CI, the
raw and Holm p and whether every seed agrees in sign.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.study.scoring import LOWER_IS_BETTER, METRICS, summarize
from megatron_hybridir.study.stats import METHOD, holm, paired_bootstrap_diff

DRAWS = 10_000
# The teacher's bi-encoder cosines live on the student's scale: the same temperature as the
# student's (demo_cpu.yaml: loss.temperature 0.05) gives both softmaxes one sharpness.
DISTILLATION = ["loss.distillation.kind=kl", "loss.distillation.temperature=0.05",
                "loss.distillation.teacher_temperature=0.05"]
TEACHER_SEED = 0            # one teacher for every student seed, with a seed none of them uses


# --- tables from per-query scores (no training; tested on fixtures) ---------------------------

def contrast_table(arms: dict[str, list[dict[str, dict[str, float]]]],
                   contrasts: Sequence[tuple[str, str]], *, metrics: Sequence[str] = METRICS,
                   draws: int = DRAWS) -> tuple[dict, list[str]]:
    """Per-arm mean ± population std over seeds, and each contrast ``a - b`` per metric by the
    paired bootstrap over queries and seeds, Holm-adjusted over every (contrast, metric) printed.

    ``arms[name][k]`` is seed k's per-query scores ({metric: {query: value}}); every arm lists the
    same seeds in the same order (the pairing). Only queries scored in both arms of a contrast, in
    every seed, enter it."""
    counts = {name: len(runs) for name, runs in arms.items()}
    if not arms or len(set(counts.values())) != 1 or 0 in counts.values():
        raise ValueError(f"contrast_table: every arm needs the same number (> 0) of seeds, got {counts}")
    for a, b in contrasts:
        for name in (a, b):
            if name not in arms:
                raise ValueError(f"contrast_table: contrast {a!r} - {b!r} names {name!r}, which is "
                                 f"not an arm ({', '.join(arms)})")
    means = {name: {m: [summarize({m: run[m]})[m] for run in runs] for m in metrics}
             for name, runs in arms.items()}
    summary = {name: {m: (float(np.mean(v)), float(np.std(v))) for m, v in per.items()}
               for name, per in means.items()}
    rows = []
    for n, (a, b) in enumerate(contrasts):
        for k, metric in enumerate(metrics):
            queries = sorted(set.intersection(*[set(run[metric]) for run in arms[a] + arms[b]]))
            if not queries:
                raise ValueError(f"contrast_table: {a!r} and {b!r} share no scored query for {metric}")
            diff = np.array([[ra[metric][q] - rb[metric][q] for q in queries]
                             for ra, rb in zip(arms[a], arms[b])])
            result = paired_bootstrap_diff(diff, draws=draws, seed=1000 * n + k)
            rows.append({"contrast": f"{a} - {b}", "metric": metric, "diff": result.mean_diff,
                         "ci": [result.ci_low, result.ci_high], "p": result.p_value,
                         "per_seed": result.per_seed, "seeds_agree": result.seeds_agree,
                         "queries": result.n_queries, "seeds": result.n_seeds})
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = p
    lines = ["| arm | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, values in summary.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m, *values[m]) for m in metrics) + " |")
    lines += ["", "| contrast | metric | difference | 95% CI | p | Holm p | seeds agree in sign |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        digits = 1 if r["metric"] == "rank_distance" else 3
        lines.append(f"| {r['contrast']} | {r['metric']}{' (lower is better)' if r['metric'] in LOWER_IS_BETTER else ''} "
                     f"| {r['diff']:+.{digits}f} | [{r['ci'][0]:+.{digits}f}, {r['ci'][1]:+.{digits}f}] "
                     f"| {r['p']:.4f} | {r['p_holm']:.4f} | {'yes' if r['seeds_agree'] else 'no'} |")
    return {"summary": summary, "contrasts": rows, "method": METHOD.format(draws=draws)}, lines


def _fmt(metric: str, mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}" if metric == "rank_distance" else f"{mean:.3f} ± {std:.3f}"


def write_report(out: Path, name: str, header: str, result: dict, lines: list[str],
                 extra: Optional[dict] = None) -> str:
    """``experiment_<name>.md`` (header, tables, method) and ``.json``; returns the markdown."""
    text = (header + "\n\n" + "\n".join(lines) + "\n\n" + result["method"]
            + "; per-arm values: mean ± population std over seeds of the per-query means\n")
    (out / f"experiment_{name}.md").write_text(text)
    (out / f"experiment_{name}.json").write_text(json.dumps(dict(result, **(extra or {})), indent=2))
    print(text)
    return text


# --- arms: what each comparison trains (tested without training) ------------------------------

def distillation_arms(seed: int, steps: int, weight: float) -> dict[str, list[str]]:
    base = ["data.alpha=0.5", f"seed={seed}", f"training.train_steps={steps}"]
    return {"no distillation": [*base, "loss.distillation.weight=0"],
            f"distillation (KL, weight {weight:g})": [*base, *DISTILLATION,
                                                      f"loss.distillation.weight={weight}"]}


def teacher_overrides(steps: int) -> list[str]:
    return ["data.alpha=0.5", f"seed={TEACHER_SEED}", f"training.train_steps={steps}"]


def sources_arms(seed: int, steps: int) -> dict[str, list[str]]:
    base = ["data.alpha=0.5", f"seed={seed}", f"training.train_steps={steps}"]
    return {"mixed batches": [*base, "data.same_source_batches=false"],
            "same-source batches": [*base, "data.same_source_batches=true"]}


MERGE_ALPHAS = {"alpha=1": 1.0, "alpha=0": 0.0, "hybrid (alpha=0.5)": 0.5}
MERGED = "merge 0.5 (alpha=1) + 0.5 (alpha=0)"


def merge_arms(seed: int, steps: int) -> dict[str, list[str]]:
    return {name: [f"data.alpha={alpha}", f"seed={seed}", f"training.train_steps={steps}"]
            for name, alpha in MERGE_ALPHAS.items()}


# --- running ------------------------------------------------------------------------------------

def _trained_step(run_dir: Path) -> int:
    latest = run_dir / "checkpoints" / "latest"
    return int(latest.read_text().strip()) if latest.exists() else 0


def train_arm(run_dir: Path, data: DemoData, overrides: list[str], steps: int) -> None:
    """Train unless the run's latest checkpoint is at ``steps`` (a killed run resumes)."""
    from megatron_hybridir.demo.pipeline import log, train

    done = _trained_step(run_dir)
    if done == steps:
        return
    if done > steps:
        raise ValueError(f"{run_dir}: its latest checkpoint is step {done}, past the {steps} "
                         f"asked for; use another --out")
    log(f"train {run_dir.name}")
    train(run_dir, data, overrides)


def score_run(run_dir: Path, data: DemoData, *, checkpoint: Optional[Path] = None) -> dict:
    """Export ``checkpoint`` (default: the run directory) to ``run_dir/hf`` and score it on the
    test split per query; cached in ``run_dir/scores.json``."""
    from megatron_hybridir.convert.hf_export import export_hf
    from megatron_hybridir.demo.pipeline import log
    from megatron_hybridir.evaluation.encoder import Encoder, EncoderConfig
    from megatron_hybridir.study.scoring import query_scores

    cached = run_dir / "scores.json"
    if cached.exists():
        return json.loads(cached.read_text())
    prompts = json.loads((Path(data.indexed) / "manifest.json").read_text())["config"]["prompts"]
    export = run_dir / "hf"
    log(f"export + per-query scores: {run_dir}")
    export_hf(checkpoint or run_dir, export, tokenizer=data.tokenizer, overwrite=True,
              max_seq_length=96, query_prompt=prompts["query"], passage_prompt=prompts["positive"])
    encoder = Encoder(EncoderConfig(model=str(export)))
    try:
        scores = query_scores(Path(data.root) / "test", encoder, list(data.languages))
    finally:
        encoder.close()
    cached.write_text(json.dumps(scores))
    return scores


def _header(what: str, seeds: Sequence[int], steps: int) -> str:
    return (f"{what}; {len(seeds)} seeds ({', '.join(map(str, seeds))}) x {steps} steps per arm; "
            f"demo test split (unseen entities, 6 languages)")


def run_distillation_experiment(out: Path, *, seeds: Sequence[int] = (1, 2, 3), steps: int = 200,
                                teacher_steps: Optional[int] = None, weight: float = 0.5,
                                overrides: Sequence[str] = (), draws: int = DRAWS) -> dict:
    from megatron_hybridir.demo import mining
    from megatron_hybridir.demo.pipeline import prepare_data

    teacher_steps = teacher_steps or 3 * steps
    if teacher_steps <= steps:
        raise ValueError(f"teacher_steps ({teacher_steps}) must exceed the students' steps ({steps})")
    data = prepare_data(out / "data")
    teacher = out / "teacher"
    train_arm(teacher, data, [*teacher_overrides(teacher_steps), *overrides], teacher_steps)
    teacher_scores = score_run(teacher, data)
    if (out / "mined" / "indexed" / "manifest.json").exists():     # mined by an earlier run
        mined = dataclasses.replace(data, indexed=out / "mined" / "indexed")
    else:
        mined = mining.mined_data(data, teacher / "hf", out / "mined", teacher="bi-encoder")
    arms: dict[str, list] = {}
    for seed in seeds:
        for name, arm in distillation_arms(seed, steps, weight).items():
            run_dir = out / f"{'distill' if name != 'no distillation' else 'plain'}_seed{seed}"
            if not (run_dir / "scores.json").exists():
                train_arm(run_dir, mined, [*arm, *overrides], steps)
            arms.setdefault(name, []).append(score_run(run_dir, mined))
    names = list(arms)
    result, lines = contrast_table(arms, [(names[1], names[0])], draws=draws)
    teacher_row = {m: float(v) for m, v in summarize(teacher_scores).items()}
    lines.append("")
    lines.append(f"teacher ({teacher_steps} steps, seed {TEACHER_SEED}): " + ", ".join(
        f"{m} {teacher_row[m]:.1f}" if m == "rank_distance" else f"{m} {teacher_row[m]:.3f}"
        for m in METRICS if m in teacher_row))
    header = _header(f"distillation vs none (hybrid batches, alpha 0.5; students on the teacher's "
                     f"mined negatives with its scores; teacher {teacher_steps} steps)", seeds, steps)
    write_report(out, "distillation", header, result, lines, {"teacher": teacher_row})
    return result


def run_sources_experiment(out: Path, *, seeds: Sequence[int] = (1, 2, 3), steps: int = 200,
                           second_source_entities: int = 300, overrides: Sequence[str] = (),
                           draws: int = DRAWS) -> dict:
    from megatron_hybridir.demo.pipeline import prepare_data

    data = prepare_data(out / "data", second_source_entities=second_source_entities)
    arms: dict[str, list] = {}
    source_batches = {}
    for seed in seeds:
        for name, arm in sources_arms(seed, steps).items():
            run_dir = out / f"{'same_source' if name == 'same-source batches' else 'mixed'}_seed{seed}"
            if not (run_dir / "scores.json").exists():
                train_arm(run_dir, data, [*arm, *overrides], steps)
            arms.setdefault(name, []).append(score_run(run_dir, data))
            last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
            source_batches[run_dir.name] = last.get("source_batches")
    result, lines = contrast_table(arms, [("same-source batches", "mixed batches")], draws=draws)
    counts = {k: {Path(source).name: n for source, n in v.items()}
              for k, v in source_batches.items() if k.startswith("same") and v}
    if counts:
        lines += ["", "batches per source in the same-source runs: " + "; ".join(
            f"{k}: " + ", ".join(f"{source} {n}" for source, n in v.items()) for k, v in counts.items())]
    header = _header(f"same-source vs mixed batches (hybrid, alpha 0.5; two sources: the demo's "
                     f"train.jsonl and its second source, {second_source_entities} entities in "
                     f"another question / passage style)", seeds, steps)
    write_report(out, "sources", header, result, lines, {"source_batches": source_batches})
    return result


def run_merge_experiment(out: Path, *, seeds: Sequence[int] = (1, 2, 3), steps: int = 200,
                         overrides: Sequence[str] = (), draws: int = DRAWS) -> dict:
    from megatron_hybridir.convert.merge import merge_checkpoints
    from megatron_hybridir.demo.pipeline import prepare_data

    data = prepare_data(out / "data")
    arms: dict[str, list] = {}
    for seed in seeds:
        dirs = {}
        for name, arm in merge_arms(seed, steps).items():
            # run_experiment's layout, so its runs (same steps, seeds, data) are reused
            run_dir = dirs[name] = out / f"alpha{MERGE_ALPHAS[name]:g}_seed{seed}"
            if not (run_dir / "scores.json").exists():
                train_arm(run_dir, data, [*arm, *overrides], steps)
            arms.setdefault(name, []).append(score_run(run_dir, data))
        merged = out / f"merged_seed{seed}"
        if not (merged / "scores.json").exists():
            merge_checkpoints([dirs["alpha=1"], dirs["alpha=0"]], merged / "checkpoint",
                              method="linear", weights=[0.5, 0.5], overwrite=True)
        arms.setdefault(MERGED, []).append(score_run(merged, data, checkpoint=merged / "checkpoint"))
    result, lines = contrast_table(arms, [(MERGED, "hybrid (alpha=0.5)")], draws=draws)
    header = _header("a linear 0.5 / 0.5 merge of the alpha=1 and alpha=0 runs (per seed) vs the "
                     "hybrid alpha=0.5 run", seeds, steps)
    write_report(out, "merge", header, result, lines)
    return result
