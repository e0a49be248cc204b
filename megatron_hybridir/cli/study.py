"""The size x alpha x seed study: the grid on the embedded benchmark with statistics and a report,
or (``--plan slurm``) the same study for 7B / 14B / 30B as a Slurm job array.

    hybridir study --out runs/study                      # grid (resumable) + report
    hybridir study --out runs/study --report-only        # statistics + report only
    hybridir study --plan slurm --out runs/study-slurm \
        --hf 7b=/models/Mistral-7B-v0.1 14b=/models/Qwen2.5-14B 30b=/models/Qwen3-32B \
        --data-source 'mmarco --root /d/mmarco/data/v2 --languages en de zh' \
        --data-source 'dpr --source /d/biencoder-nq-train.json'   # the whole pipeline as sbatch jobs
    hybridir study --plan slurm --out runs/study-slurm --report-only   # cluster report

Each --data-source is one tools/build_training_data.py call in the data.sbatch job, verbatim.
"""

import argparse
import sys
from pathlib import Path

from megatron_hybridir.config import ConfigError
from megatron_hybridir.paths import UnsafePathError, safe_name
from megatron_hybridir.study.analysis import StudyError
from megatron_hybridir.study.budget import BudgetRule
from megatron_hybridir.study.grid import DEFAULT_SIZES, SizeSpec, StudyConfig, run_grid


def _size(text: str) -> SizeSpec:
    """NAME:HIDDEN[:LAYERS]; NAME becomes part of the cell folders' names."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        raise ValueError(f"--sizes: expected NAME:HIDDEN[:LAYERS] (positive integers) for the "
                         f"local grid, got {text!r}")
    return SizeSpec(safe_name(parts[0], what="--sizes name"), *(int(p) for p in parts[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output folder (default runs/study or runs/study-slurm)")
    parser.add_argument("--plan", choices=["local", "slurm"], default="local")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="local grid: NAME:HIDDEN[:LAYERS] ... (default S:24 M:64 L:128); "
                             "slurm: preset names")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max-steps", type=int, default=BudgetRule.max_steps)
    parser.add_argument("--interval", type=int, default=BudgetRule.interval)
    parser.add_argument("--patience", type=int, default=BudgetRule.patience)
    parser.add_argument("--min-delta", type=float, default=BudgetRule.min_delta)
    parser.add_argument("--workers", type=int, default=1, help="local grid: cells run at once")
    parser.add_argument("--mfu", type=float, default=0.35, help="slurm: assumed MFU for GPU-hours")
    parser.add_argument("--gpu", default="H100", help="slurm: GPU whose bf16 peak prices the FLOPs")
    parser.add_argument("--hf", nargs="+", action="extend", default=[], metavar="SIZE=FOLDER",
                        help="slurm: the Hugging Face folder each size is imported from")
    parser.add_argument("--data-source", action="append", default=[], metavar="'KIND ARGS'",
                        help="slurm, repeatable: one tools/build_training_data.py call, e.g. "
                             "'dpr --source biencoder-nq-train.json --leak-check nq nq', passed "
                             "verbatim; the plan adds --output <study>/data/records/<n>_<kind>.jsonl")
    parser.add_argument("--languages", nargs="+", default=None,
                        help="slurm: languages tokenized for training (default: the XQuAD-R 11)")
    parser.add_argument("--budget", choices=["fixed"], default="fixed",
                        help="slurm: budget rule; fixed = every cell of a size trains --train-steps "
                             "and its last checkpoint is evaluated (no dev selection at scale)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="slurm: the fixed budget in steps (default: each size's recipe)")
    parser.add_argument("--recipe", nargs="+", action="extend", default=[], metavar="SIZE=YAML",
                        help="slurm: the recipe of a size (replaces the preset's; a size not among "
                             "7b/14b/30b needs one)")
    parser.add_argument("--cpu", action="store_true",
                        help="slurm: every job one task on one CPU, no GPUs (a tiny walk of the "
                             "pipeline on a small cluster such as scripts/slurm_local.sh)")
    parser.add_argument("--data-root", default=None,
                        help="slurm: evaluation data root (beir/<name>, nq-dpr, miracl, "
                             "lareqa/{xquad-r,mlqa-r}; default data, DATA_ROOT at run time wins)")
    parser.add_argument("--beir", nargs="+", default=None,
                        help="slurm: BEIR datasets evaluated (default scifact nfcorpus fiqa)")
    parser.add_argument("--benchmarks", nargs="+", default=None,
                        help="slurm: benchmarks evaluated per cell (default beir nq miracl xquad-r "
                             "mlqa-r)")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: statistics + report (slurm: the cluster report over --out)")
    parser.add_argument("--draws", type=int, default=10_000, help="bootstrap draws per comparison")
    parser.add_argument("overrides", nargs="*", help="training config overrides for every cell, key=value")
    args = parser.parse_args(argv)
    if args.plan == "slurm":
        from megatron_hybridir.study.slurm import main_plan

        return main_plan(args)
    try:
        sizes = [_size(s) for s in args.sizes] if args.sizes else list(DEFAULT_SIZES)
        config = StudyConfig(out=args.out or "runs/study", sizes=sizes, alphas=args.alphas,
                             seeds=args.seeds, overrides=args.overrides, workers=args.workers,
                             budget=BudgetRule(args.max_steps, args.interval, args.patience,
                                               args.min_delta))
        config.check()
    except (ValueError, ConfigError, UnsafePathError) as err:
        parser.error(str(err))
    status = 0
    if not args.report_only:
        grid = run_grid(config)
        status = 1 if grid["failed"] else 0
    from megatron_hybridir.study.report import write_report

    try:
        write_report(Path(config.out), draws=args.draws)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
