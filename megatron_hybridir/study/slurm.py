"""The size x alpha x seed study at 7B / 14B / 30B as a Slurm plan: sbatch arrays, chained
evaluations, the scaling report, and the GPU-hours it will cost.

Why it exists: ``tools/run_study.py --plan slurm`` writes everything a cluster user submits with one
command (``bash <out>/submit.sh``); nothing runs here. Written under ``out``:

- ``train_<size>.sbatch``: one job array per size (resources differ between sizes), one task per
  (alpha, seed), each running the size's recipe through ``slurm/launch.sh`` with ``data.alpha`` and
  ``seed`` set, in its own run directory (requeue on preemption as in the recipes);
- ``eval_cell.sbatch RUN_DIR``: export to Hugging Face, then ``python -m megatron_hybridir.evaluate``
  on BEIR, NQ, MIRACL (the monolingual side) and XQuAD-R, MLQA-R (cross-lingual / multilingual,
  with the language-bias measures), then the run's parameters / FLOPs / alpha / seed written into
  each ``results.json`` (``annotate``), which ``tools/scaling_report.py`` needs;
- ``report.sbatch``: ``tools/scaling_report.py`` over every cell's results;
- ``submit.sh``: submits the arrays, one evaluation per training task with
  ``--dependency=afterok:<array job>_<task>``, and the report after all evaluations (afterok);
- ``plan.md`` / ``plan.json``: per cell the FLOPs of one step from the dry run
  (``training.dry_run.estimate``) and GPU-hours = FLOPs per step x steps / (MFU x peak bf16 FLOP/s).

What it does not do: early stopping at scale (each cell trains its recipe's ``train_steps``, the same
number of steps for every size; the CPU study's dev-based rule needs a multi-rank stop decision that
the trainer hook leaves to the caller), or per-query statistics (the evaluation CLI reports means).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_hybridir.config import load_config
from megatron_hybridir.training.dry_run import estimate
from megatron_hybridir.training.flops import PEAK_BF16_TFLOPS

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ScaleSize:
    name: str
    recipe: str           # relative to the repository root
    gpus: int             # GPUs per training job (8 per node)


SCALE_SIZES = {"7b": ScaleSize("7b", "examples/retriever_7b.yaml", 8),
               "14b": ScaleSize("14b", "examples/retriever_14b.yaml", 8),
               "30b": ScaleSize("30b", "examples/retriever_30b.yaml", 16)}


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

    def check(self) -> None:
        from megatron_hybridir.config import ConfigError

        unknown = [s for s in self.sizes if s not in SCALE_SIZES]
        if unknown:
            raise ConfigError(f"--sizes: unknown scale size(s) {unknown}; known: {sorted(SCALE_SIZES)}")
        if not 0.0 < self.mfu <= 1.0:
            raise ConfigError(f"--mfu: expected a fraction in (0, 1], got {self.mfu}")
        if self.gpu not in PEAK_BF16_TFLOPS:
            raise ConfigError(f"--gpu: expected one of {sorted(PEAK_BF16_TFLOPS)}, got {self.gpu!r}")
        if any(not 0.0 <= a <= 1.0 for a in self.alphas) or not self.seeds:
            raise ConfigError(f"alphas must lie in [0, 1] and seeds be non-empty, got {self.alphas}, {self.seeds}")


def cost(config: PlanConfig, size: str) -> dict:
    """Parameters, FLOPs per step (dry run), steps and GPU-hours of one training cell of ``size``."""
    spec = SCALE_SIZES[size]
    recipe = config.recipes.get(size, spec.recipe)
    run = load_config(ROOT / recipe)
    e = estimate(run, world_size=spec.gpus)
    steps = run.training.train_steps
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


def train_script(config: PlanConfig, c: dict) -> str:
    cells = _cells(config, c["size"])
    hours = max(1, math.ceil(c["wall_hours"] * config.time_margin))
    nodes = max(1, c["gpus"] // 8)
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-{c['size']}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={min(8, c['gpus'])}
#SBATCH --gpus-per-node={min(8, c['gpus'])}
#SBATCH --cpus-per-task=16
#SBATCH --time={hours}:00:00
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --signal=USR1@600
#SBATCH --array=0-{len(cells) - 1}
#SBATCH --output=logs/%x-%A_%a.out
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
# shellcheck source=slurm/launch.sh
source slurm/launch.sh "data.alpha=${{ALPHAS[$i]}}" "seed=${{SEEDS[$i]}}" "$@"
"""


def eval_script(config: PlanConfig) -> str:
    beir = " ".join(shlex.quote(b) for b in config.beir)
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-eval
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
# Evaluate one trained cell of the study on both sides of the trade-off:
#   sbatch eval_cell.sbatch RUN_DIR     (submit.sh chains it after the cell's training task)
# Monolingual: BEIR ({', '.join(config.beir)}) nDCG@10, NQ top-20, MIRACL nDCG@10;
# cross-lingual / multilingual: XQuAD-R and MLQA-R mAP (X->X, X->Y, pool) and language bias.
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
RUN_DIR=${{1:?usage: eval_cell.sbatch RUN_DIR}}
DATA=${{DATA_ROOT:-{config.data_root}}}
PY=${{PYTHON:-python3}}
GPUS=${{SLURM_GPUS_ON_NODE:-8}}
DEVICES=$(seq -s, -f "cuda:%g" 0 $((GPUS - 1)))
"$PY" tools/export_to_hf.py --checkpoint "$RUN_DIR" --output "$RUN_DIR/hf" --overwrite

evaluate() {{
    local name=$1
    shift
    "$PY" -m megatron_hybridir.evaluate "encoder.model=$RUN_DIR/hf" "encoder.devices=[$DEVICES]" \\
        "output=$RUN_DIR/eval/$name" progress=false "$@"
}}

for name in {beir}; do
    evaluate "beir-$name" benchmark=beir "data=$DATA/beir/$name"
done
evaluate nq benchmark=nq "data=$DATA/nq-dpr"
evaluate miracl benchmark=miracl "data=$DATA/miracl"
evaluate xquad-r benchmark=xquad-r "data=$DATA/lareqa/xquad-r"
evaluate mlqa-r benchmark=mlqa-r "data=$DATA/lareqa/mlqa-r"
"$PY" -m megatron_hybridir.study.slurm annotate "$RUN_DIR" "$RUN_DIR"/eval/*/results.json
"""


def report_script(config: PlanConfig) -> str:
    return f"""#!/usr/bin/env bash
#SBATCH --job-name=study-report
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=0:30:00
#SBATCH --output=logs/%x-%j.out
# The scaling report over every evaluated cell (submit.sh runs it after all evaluations).
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
PY=${{PYTHON:-python3}}
shopt -s nullglob
results=({shlex.quote(config.out)}/runs/*/eval/*/results.json)
"$PY" tools/scaling_report.py --out {shlex.quote(config.out + '/scaling')} "${{results[@]}}"
"""


def submit_script(config: PlanConfig, costs: list[dict]) -> str:
    lines = ["#!/usr/bin/env bash",
             "# Submit the whole study: training arrays, one evaluation per training task (afterok),",
             "# then the scaling report after every evaluation. Run from the repository root.",
             "set -euo pipefail", "mkdir -p logs", "eval_jobs=()"]
    for c in costs:
        n = len(_cells(config, c["size"]))
        runs = _bash_array(r for _, _, r in _cells(config, c["size"]))
        var = "train_" + c["size"].replace(".", "_")
        lines += [f"{var}=$(sbatch --parsable {shlex.quote(config.out)}/train_{c['size']}.sbatch)",
                  f"runs={runs}",
                  f"for i in $(seq 0 {n - 1}); do",
                  f"    eval_jobs+=(\"$(sbatch --parsable \"--dependency=afterok:${{{var}%%;*}}_$i\" "
                  f"{shlex.quote(config.out)}/eval_cell.sbatch \"${{runs[$i]}}\")\")",
                  "done"]
    lines += ['deps=$(IFS=:; echo "${eval_jobs[*]%%;*}")',
              f"report=$(sbatch --parsable \"--dependency=afterok:$deps\" {shlex.quote(config.out)}/report.sbatch)",
              'echo "submitted ${#eval_jobs[@]} evaluations; report job $report"']
    return "\n".join(lines) + "\n"


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
                               f"evaluation jobs come on top (8 GPUs each, not estimated).")


def write_plan(config: PlanConfig) -> dict:
    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    costs = [cost(config, s) for s in config.sizes]
    for c in costs:
        (out / f"train_{c['size']}.sbatch").write_text(train_script(config, c))
    (out / "eval_cell.sbatch").write_text(eval_script(config))
    (out / "report.sbatch").write_text(report_script(config))
    (out / "submit.sh").write_text(submit_script(config, costs))
    table = plan_table(config, costs)
    (out / "plan.md").write_text(f"# Study plan: sizes {', '.join(config.sizes)} x alphas "
                                 f"{config.alphas} x seeds {config.seeds}\n\n{table}\n\n"
                                 f"Submit: `bash {out}/submit.sh`\n")
    plan = {"config": asdict(config), "cells": costs}
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    print(table)
    print(f"\nwrote {out}/submit.sh, train_*.sbatch, eval_cell.sbatch, report.sbatch, plan.md")
    return plan


def annotate(run_dir: str | Path, results: list[str | Path]) -> None:
    """Write the run's parameters, FLOPs, alpha and seed into evaluation results (``run_info``)."""
    from megatron_hybridir.study.scaling import run_info

    info = run_info(Path(run_dir))
    if not info:
        raise FileNotFoundError(f"{run_dir}: no config.yaml; not a training run directory")
    for path in results:
        data = json.loads(Path(path).read_text())
        data["run_info"] = info
        Path(path).write_text(json.dumps(data, indent=2))


def main_plan(args) -> int:
    """``tools/run_study.py --plan slurm``."""
    config = PlanConfig(out=args.out or "runs/study-slurm", alphas=args.alphas, seeds=args.seeds,
                        mfu=args.mfu, gpu=args.gpu)
    if args.sizes:
        config.sizes = list(args.sizes)
    write_plan(config)
    return 0


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 3 and sys.argv[1] == "annotate":
        annotate(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit("usage: python -m megatron_hybridir.study.slurm annotate RUN_DIR RESULTS.json ...")
