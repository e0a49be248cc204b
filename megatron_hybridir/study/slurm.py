"""The size x alpha x seed study at 7B / 14B / 30B as a Slurm plan: the whole pipeline from the
Hugging Face checkpoints and the public data sources to the report, and the GPU-hours it will cost.

Why it exists: ``tools/run_study.py --plan slurm`` writes everything a cluster user submits with one
command (``bash <out>/submit.sh``); nothing runs here. Written under ``out``:

- ``data.sbatch``, ``import_<size>.sbatch``, ``prep_<size>.sbatch``: the training records built
  from ``--data-sources``, each size's ``--hf`` folder imported to ``<out>/checkpoints/<size>`` and
  the records tokenized with its tokenizer into ``<out>/data/<size>`` (``study.slurm_pipeline``);
- ``train_<size>.sbatch``: one job array per size (resources differ between sizes), one task per
  (alpha, seed), each running the size's recipe through ``slurm/launch.sh`` with
  ``checkpoint.init_from``, ``data.path``, ``training.train_steps`` (the budget), ``data.alpha``
  and ``seed`` set, in its own run directory (requeue on preemption as in the recipes);
- ``eval_cell.sbatch RUN_DIR``: export to Hugging Face, then ``python -m megatron_hybridir.evaluate``
  on BEIR, NQ, MIRACL (the monolingual side) and XQuAD-R, MLQA-R (cross-lingual / multilingual,
  with the language-bias measures), then the run's parameters / FLOPs / alpha / seed written into
  each ``results.json`` (``annotate``), which ``tools/scaling_report.py`` needs;
- ``report.sbatch``: ``tools/scaling_report.py`` over every cell's results, and the cluster
  report (``study.cluster_report``: paired bootstrap over the per-query tables, Holm);
- ``submit.sh``: the dependency graph (``study.slurm_pipeline``);
- ``plan.md`` / ``plan.json``: per cell the FLOPs of one step from the dry run
  (``training.dry_run.estimate``) and GPU-hours = FLOPs per step x steps / (MFU x peak bf16 FLOP/s),
  the study id every evaluation is stamped with, and the budget rule.

The budget rule at scale is a documented fixed budget (``--budget fixed``, the only rule offered):
every cell of a size trains ``--train-steps`` steps (default: the size's recipe), passed explicitly
as ``training.train_steps``, and its last checkpoint is evaluated. Dev-split checkpoint selection
(the CPU study's rule) is not offered at scale: it needs every saved checkpoint exported and scored
on a dev split. The report states the rule and the steps each cell reached.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from megatron_hybridir.recipes import resolve_config
from megatron_hybridir.study import slurm_pipeline
from megatron_hybridir.study.grid import check_alphas_and_seeds
from megatron_hybridir.training.dry_run import estimate
from megatron_hybridir.training.run_config import load_run_config
from megatron_hybridir.training.flops import PEAK_BF16_TFLOPS


@dataclass(frozen=True)
class ScaleSize:
    name: str
    recipe: str           # a YAML file, or a packaged recipe as examples/NAME.yaml
    gpus: int             # GPUs per training job (8 per node)


SCALE_SIZES = {"7b": ScaleSize("7b", "examples/retriever_7b.yaml", 8),
               "14b": ScaleSize("14b", "examples/retriever_14b.yaml", 8),
               "30b": ScaleSize("30b", "examples/retriever_30b.yaml", 16)}


# Benchmark -> its folder under the data root (``--data-root``; DATA_ROOT at run time wins).
EVAL_FOLDERS = {"beir": "beir/<name>", "nq": "nq-dpr", "miracl": "miracl",
                "xquad-r": "lareqa/xquad-r", "mlqa-r": "lareqa/mlqa-r"}


@dataclass
class PlanConfig:
    out: str = "runs/study-slurm"
    sizes: list[str] = field(default_factory=lambda: ["7b", "14b", "30b"])
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    mfu: float = 0.35               # assumed model FLOPs utilisation (tools/bench/bench_mfu.py)
    gpu: str = "H100"               # key of training.flops.PEAK_BF16_TFLOPS
    data_root: str = "data"         # beir/<name>, nq-dpr, miracl, lareqa/{xquad-r,mlqa-r}
    beir: list[str] = field(default_factory=lambda: ["scifact", "nfcorpus", "fiqa"])
    time_margin: float = 1.3        # sbatch --time = wall estimate x margin (requeue covers overruns)
    recipes: dict[str, str] = field(default_factory=dict)   # size -> recipe override (tests)
    hf: dict[str, str] = field(default_factory=dict)        # size -> Hugging Face folder to import
    data_sources: list[str] = field(default_factory=list)   # one build_training_data.py call each
    languages: list[str] = field(default_factory=lambda: ["ar", "de", "el", "en", "es", "hi", "ru",
                                                          "th", "tr", "vi", "zh"])  # tokenized
    budget: str = "fixed"                                   # see BUDGET_RULES
    train_steps: Optional[int] = None                       # fixed budget; None: each recipe's
    benchmarks: list[str] = field(default_factory=lambda: list(EVAL_FOLDERS))   # evaluated per cell
    cpu: bool = False               # every job one task on one CPU, no GPUs (the tiny walk, --cpu)

    def check(self) -> None:
        from megatron_hybridir.config import ConfigError

        unknown = [s for s in self.sizes if s not in SCALE_SIZES and s not in self.recipes]
        if unknown:
            raise ConfigError(f"--sizes: unknown scale size(s) {unknown}; known: {sorted(SCALE_SIZES)}"
                              f" (another name needs --recipe {unknown[0]}=RECIPE.yaml)")
        extra = sorted(set(self.recipes) - set(self.sizes))
        if extra:
            raise ConfigError(f"--recipe: size(s) {extra} are not in --sizes {self.sizes}")
        if not 0.0 < self.mfu <= 1.0:
            raise ConfigError(f"--mfu: expected a fraction in (0, 1], got {self.mfu}")
        if self.gpu not in PEAK_BF16_TFLOPS:
            raise ConfigError(f"--gpu: expected one of {sorted(PEAK_BF16_TFLOPS)}, got {self.gpu!r}")
        if not self.alphas or not self.seeds:
            raise ConfigError(f"--alphas and --seeds must be non-empty, got {self.alphas}, {self.seeds}")
        # Two array tasks with one (alpha, seed) would share a run directory.
        check_alphas_and_seeds(self.alphas, self.seeds, alphas_field="--alphas", seeds_field="--seeds")
        bad = [b for b in self.benchmarks if b not in EVAL_FOLDERS]
        if bad or not self.benchmarks:
            raise ConfigError(f"--benchmarks: expected some of {list(EVAL_FOLDERS)}, got {self.benchmarks}")
        if self.budget not in BUDGET_RULES:
            raise ConfigError(f"--budget: expected one of {sorted(BUDGET_RULES)}, got {self.budget!r}")
        if self.train_steps is not None and self.train_steps < 1:
            raise ConfigError(f"--train-steps: expected a positive step count, got {self.train_steps}")
        missing = [s for s in self.sizes if s not in self.hf]
        if missing:
            raise ConfigError(f"--hf: no Hugging Face folder for size(s) {missing}; give "
                              f"--hf {missing[0]}=/path/to/model (the checkpoint each cell starts from)")
        if not self.data_sources:
            raise ConfigError("--data-source: at least one training-data source is required "
                              "('<kind> <arguments>' of tools/build_training_data.py)")
        for text in self.data_sources:
            slurm_pipeline.check_data_source(text)

    def study_id(self) -> str:
        """A digest of what defines the study's cells: a cell evaluated under another plan (other
        sizes, models, data, grid or budget) carries another id and the report refuses it."""
        keys = ("sizes", "alphas", "seeds", "hf", "data_sources", "languages", "beir", "budget",
                "train_steps", "recipes", "data_root", "benchmarks")
        text = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


BUDGET_RULES = {"fixed": "fixed budget: every cell of a size trains the same number of steps "
                         "(--train-steps, default the size's recipe) and its last checkpoint is "
                         "evaluated; no dev-split selection"}


def _spec(config: PlanConfig, size: str) -> ScaleSize:
    """The size's preset, or (a size named only by ``--recipe``) its recipe on one 8-GPU node;
    ``--cpu``: one process."""
    spec = SCALE_SIZES.get(size) or ScaleSize(size, config.recipes[size], 8)
    return ScaleSize(size, config.recipes.get(size, spec.recipe), 1 if config.cpu else spec.gpus)


def cost(config: PlanConfig, size: str) -> dict:
    """Parameters, FLOPs per step (dry run), steps and GPU-hours of one training cell of ``size``."""
    spec = _spec(config, size)
    recipe = spec.recipe
    run = load_run_config(resolve_config(recipe))
    e = estimate(run, world_size=spec.gpus)
    steps = config.train_steps or run.training.train_steps
    total = e["flops_per_step"] * steps
    gpu_hours = total / (config.mfu * PEAK_BF16_TFLOPS[config.gpu] * 1e12) / 3600
    return {"size": size, "recipe": recipe, "gpus": spec.gpus, "parameters": e["parameters"],
            "flops_per_step": e["flops_per_step"], "train_steps": steps, "train_flops": total,
            "gpu_hours": gpu_hours, "wall_hours": gpu_hours / spec.gpus,
            "memory_gib": e["memory_total_gib"]}


def _cells(config: PlanConfig, size: str) -> list[tuple[float, int, str]]:
    return [(a, s, f"{config.out}/runs/{size}_a{a:g}_s{s}") for a in config.alphas for s in config.seeds]


def _bash_array(values) -> str:
    return "(" + " ".join(shlex.quote(str(v)) for v in values) + ")"


def _train_resources(config: PlanConfig, c: dict) -> str:
    hours = max(1, math.ceil(c["wall_hours"] * config.time_margin))
    if config.cpu:
        return f"#SBATCH --nodes=1\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n#SBATCH --time={hours}:00:00"
    nodes, gpus = max(1, c["gpus"] // 8), min(8, c["gpus"])
    return (f"#SBATCH --nodes={nodes}\n#SBATCH --ntasks-per-node={gpus}\n#SBATCH --gpus-per-node={gpus}\n"
            f"#SBATCH --cpus-per-task=16\n#SBATCH --time={hours}:00:00\n#SBATCH --exclusive")


def train_script(config: PlanConfig, c: dict) -> str:
    cells = _cells(config, c["size"])
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-{c['size']}
{_train_resources(config, c)}
#SBATCH --requeue
#SBATCH --signal=USR1@600
#SBATCH --array=0-{len(cells) - 1}
#SBATCH --output={config.out}/logs/%x-%A_%a.out
# Size {c['size']} of the study ({c['parameters'] / 1e9:.2f}B parameters, {c['recipe']}): one array
# task per (alpha, seed). Estimate per task: {c['flops_per_step']:.3e} FLOPs/step x {c['train_steps']}
# steps = {c['gpu_hours']:.0f} GPU-hours at MFU {config.mfu:g} on {config.gpu}, {c['wall_hours']:.1f} h on {c['gpus']} GPUs.
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
ALPHAS={_bash_array(a for a, _, _ in cells)}
SEEDS={_bash_array(s for _, s, _ in cells)}
RUN_DIRS={_bash_array(r for _, _, r in cells)}
i=${{SLURM_ARRAY_TASK_ID:?submit as an array job (submit.sh)}}
export CONFIG={shlex.quote(c['recipe'])}
export RUN_DIR=${{RUN_DIRS[$i]}}
# Imported weights and this size's token ids (import_/prep_{c['size']}.sbatch); the fixed budget.
# shellcheck source=slurm/launch.sh
source slurm/launch.sh {shlex.quote(f"checkpoint.init_from={config.out}/checkpoints/{c['size']}")} \\
    {shlex.quote(f"data.path={config.out}/data/{c['size']}")} "training.train_steps={c['train_steps']}" \\
    "data.alpha=${{ALPHAS[$i]}}" "seed=${{SEEDS[$i]}}" "$@"
"""


def eval_script(config: PlanConfig) -> str:
    beir = " ".join(shlex.quote(b) for b in config.beir)
    beir_loop = (f'for name in {beir}; do\n    evaluate "beir-$name" benchmark=beir '
                 f'"data=$DATA/beir/$name"\ndone\n') if "beir" in config.benchmarks else ""
    others = "\n".join(f'evaluate {b} benchmark={b} "data=$DATA/{EVAL_FOLDERS[b]}"'
                        for b in config.benchmarks if b != "beir")
    resources = ("#SBATCH --cpus-per-task=1" if config.cpu
                 else "#SBATCH --gpus-per-node=8\n#SBATCH --cpus-per-task=64")
    devices = ('DEVICES=cpu' if config.cpu else
               'GPUS=${SLURM_GPUS_ON_NODE:-8}\nDEVICES=$(seq -s, -f "cuda:%g" 0 $((GPUS - 1)))')
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-eval
#SBATCH --nodes=1
#SBATCH --ntasks=1
{resources}
#SBATCH --time=12:00:00
#SBATCH --output={config.out}/logs/%x-%j.out
# Evaluate one trained cell of the study on both sides of the trade-off:
#   sbatch eval_cell.sbatch RUN_DIR     (submit.sh chains it after the cell's training task)
# Monolingual: BEIR ({', '.join(config.beir)}) nDCG@10, NQ top-20, MIRACL nDCG@10;
# cross-lingual / multilingual: XQuAD-R and MLQA-R mAP (X->X, X->Y, pool) and language bias.
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
RUN_DIR=${{1:?usage: eval_cell.sbatch RUN_DIR}}
DATA=${{DATA_ROOT:-{config.data_root}}}
PY=${{PYTHON:-python3}}
{devices}
"$PY" tools/export_to_hf.py --checkpoint "$RUN_DIR" --output "$RUN_DIR/hf" --overwrite

evaluate() {{
    local name=$1
    shift
    "$PY" -m megatron_hybridir.evaluate "encoder.model=$RUN_DIR/hf" "encoder.devices=[$DEVICES]" \\
        "output=$RUN_DIR/eval/$name" progress=false "$@"
}}

{beir_loop}{others}
"$PY" -m megatron_hybridir.study.slurm annotate "$RUN_DIR" "$RUN_DIR"/eval/*/results.json \\
    --study {config.study_id()}
"""


def report_script(config: PlanConfig) -> str:
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-report
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={1 if config.cpu else 4}
#SBATCH --time=0:30:00
#SBATCH --output={config.out}/logs/%x-%j.out
# The scaling report over every evaluated cell (submit.sh runs it after all evaluations), and
# the cluster report: paired bootstrap over queries and seeds, Holm, missing cells named.
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
PY=${{PYTHON:-python3}}
shopt -s nullglob
results=({shlex.quote(config.out)}/runs/*/eval/*/results.json)
"$PY" tools/scaling_report.py --out {shlex.quote(config.out + '/scaling')} "${{results[@]}}"
"$PY" tools/run_study.py --plan slurm --report-only --out {shlex.quote(config.out)}
"""


def plan_table(config: PlanConfig, costs: list[dict]) -> str:
    cells = len(config.alphas) * len(config.seeds)
    head = "| size | parameters | GPUs | memory/GPU (GiB) | FLOPs/step | steps | GPU-h per cell | wall h per cell | cells | GPU-h |"
    lines = [head, "|---" * 10 + "|"]
    for c in costs:
        lines.append(f"| {c['size']} | {c['parameters'] / 1e9:.2f}B | {c['gpus']} | {c['memory_gib']:.1f} | "
                     f"{c['flops_per_step']:.3e} | {c['train_steps']} | {c['gpu_hours']:.0f} | "
                     f"{c['wall_hours']:.1f} | {cells} | {c['gpu_hours'] * cells:.0f} |")
    total = sum(c["gpu_hours"] for c in costs) * cells
    return "\n".join(lines) + (f"\n\nTraining total: {total:,.0f} GPU-hours at MFU {config.mfu:g} on "
                               f"{config.gpu} ({PEAK_BF16_TFLOPS[config.gpu]:g} TFLOP/s bf16 peak); "
                               f"evaluation jobs come on top ("
                               f"{'one CPU' if config.cpu else '8 GPUs'} each, not estimated).")


def evaluations(config: PlanConfig) -> list[str]:
    """The evaluation folders ``eval_cell.sbatch`` writes under ``<run>/eval/``."""
    beir = [f"beir-{b}" for b in config.beir] if "beir" in config.benchmarks else []
    return beir + [b for b in config.benchmarks if b != "beir"]


def write_plan(config: PlanConfig) -> dict:
    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    costs = [cost(config, s) for s in config.sizes]
    (out / "data.sbatch").write_text(slurm_pipeline.data_script(config.out, config.data_sources,
                                                                cpu=config.cpu))
    for c in costs:
        size = c["size"]
        (out / f"import_{size}.sbatch").write_text(slurm_pipeline.import_script(
            config.out, size, config.hf[size], load_run_config(resolve_config(c["recipe"])),
            cpu=config.cpu))
        (out / f"prep_{size}.sbatch").write_text(slurm_pipeline.prep_script(
            config.out, size, config.hf[size], config.languages, cpu=config.cpu))
        (out / f"train_{size}.sbatch").write_text(train_script(config, c))
    (out / "eval_cell.sbatch").write_text(eval_script(config))
    (out / "report.sbatch").write_text(report_script(config))
    runs = {s: [r for _, _, r in _cells(config, s)] for s in config.sizes}
    (out / "submit.sh").write_text(slurm_pipeline.submit_script(config.out, config.sizes, runs))
    table = plan_table(config, costs)
    budget = {"rule": config.budget, "about": BUDGET_RULES[config.budget],
              "train_steps": {c["size"]: c["train_steps"] for c in costs}}
    (out / "plan.md").write_text(
        f"# Study plan: sizes {', '.join(config.sizes)} x alphas {config.alphas} x seeds "
        f"{config.seeds}\n\nStudy id `{config.study_id()}`. Budget rule: {budget['about']}; steps "
        f"{budget['train_steps']}.\n\n{table}\n\nJobs: data.sbatch -> prep_<size>.sbatch, "
        f"import_<size>.sbatch -> train_<size>.sbatch (array) -> eval_cell.sbatch -> report.sbatch."
        f"\n\nSubmit: `bash {out}/submit.sh`\n")
    plan = {"config": asdict(config), "study_id": config.study_id(), "budget": budget,
            "evaluations": evaluations(config),
            "runs": {s: [Path(r).name for r in rs] for s, rs in runs.items()}, "cells": costs}
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    print(table)
    print(f"\nwrote {out}/submit.sh, data.sbatch, import_*.sbatch, prep_*.sbatch, train_*.sbatch, "
          f"eval_cell.sbatch, report.sbatch, plan.md")
    return plan


def annotate(run_dir: str | Path, results: list[str | Path], study: Optional[str] = None) -> None:
    """Write the run's parameters, FLOPs, alpha and seed (and the plan's study id) into evaluation
    results (``run_info``)."""
    from megatron_hybridir.training.run_summary import run_info

    info = run_info(Path(run_dir))
    if not info:
        raise FileNotFoundError(f"{run_dir}: no config.yaml; not a training run directory")
    if study:
        info["study"] = study
    for path in results:
        data = json.loads(Path(path).read_text())
        data["run_info"] = info
        Path(path).write_text(json.dumps(data, indent=2))


def _pairs(values: list[str], flag: str, example: str) -> dict[str, str]:
    from megatron_hybridir.config import ConfigError

    out = {}
    for value in values or []:
        size, sep, folder = value.partition("=")
        if not sep or not size or not folder:
            raise ConfigError(f"{flag} {value!r}: expected SIZE=PATH, e.g. {example}")
        out[size] = folder
    return out


def _hf_pairs(values: list[str]) -> dict[str, str]:
    return _pairs(values, "--hf", "7b=/models/Mistral-7B-v0.1")


def main_plan(args) -> int:
    """``tools/run_study.py --plan slurm`` (with ``--report-only``: the cluster report)."""
    out = args.out or "runs/study-slurm"
    if args.report_only:
        from megatron_hybridir.study.cluster_report import write_cluster_report

        write_cluster_report(Path(out), draws=args.draws)
        return 0
    config = PlanConfig(out=out, alphas=args.alphas, seeds=args.seeds, mfu=args.mfu, gpu=args.gpu,
                        hf=_hf_pairs(args.hf), data_sources=list(args.data_source or []),
                        budget=args.budget, train_steps=args.train_steps, cpu=args.cpu,
                        recipes=_pairs(args.recipe, "--recipe", "7b=examples/retriever_7b.yaml"))
    if args.data_root:
        config.data_root = args.data_root
    if args.beir:
        config.beir = list(args.beir)
    if args.benchmarks:
        config.benchmarks = list(args.benchmarks)
    if args.languages:
        config.languages = list(args.languages)
    if args.sizes:
        config.sizes = list(args.sizes)
    write_plan(config)
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m megatron_hybridir.study.slurm annotate")
    parser.add_argument("command", choices=["annotate"])
    parser.add_argument("run_dir")
    parser.add_argument("results", nargs="+")
    parser.add_argument("--study", default=None, help="the plan's study id (plan.json)")
    args = parser.parse_args()
    annotate(args.run_dir, args.results, args.study)
