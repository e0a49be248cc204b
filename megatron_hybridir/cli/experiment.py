"""Monolingual (alpha=1) vs cross-lingual (alpha=0) vs hybrid (alpha=0.5) batches on the demo,
several seeds each, same budget; writes experiment.md, experiment.json and tradeoff.png.
``--compare negatives``: random vs mined hard negatives under hybrid batches instead
(experiment_negatives.md / .json). ``--compare distillation|sources|merge``: issue 28's comparisons
with paired statistics over queries and seeds, Holm-adjusted (``study/evidence.py``;
experiment_<compare>.md / .json): distillation from a longer-trained teacher vs none, same-source vs
mixed batches on the demo with its second source, a 0.5 / 0.5 merge of alpha=1 and alpha=0 runs vs
the hybrid run.

    hybridir experiment --out runs/experiment [--seeds 1 2 3] [--steps 300] [key=value ...]
    hybridir experiment --compare negatives --out runs/negatives [--first-steps 100]
    hybridir experiment --compare distillation --out runs/distillation [--teacher-steps 300]
    hybridir experiment --compare sources --out runs/sources [--second-source 300]
    hybridir experiment --compare merge --out runs/merge
"""

import argparse
import sys
from pathlib import Path

from megatron_hybridir.study.evidence import (run_distillation_experiment, run_merge_experiment,
                                              run_sources_experiment)
from megatron_hybridir.study.experiment import run_experiment, run_negatives_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.0, 0.5])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare", choices=["batches", "negatives", "distillation", "sources", "merge"],
                        default="batches")
    parser.add_argument("--first-steps", type=int, default=100,
                        help="negatives: first-pass steps of the mined arm (inside --steps)")
    parser.add_argument("--teacher-steps", type=int, default=None,
                        help="distillation: the teacher's training steps (default 3 x --steps)")
    parser.add_argument("--distillation-weight", type=float, default=0.5,
                        help="distillation: loss.distillation.weight of the distilled arm")
    parser.add_argument("--second-source", type=int, default=300, metavar="ENTITIES",
                        help="sources: entities of the demo's second source")
    parser.add_argument("overrides", nargs="*", help="training config overrides, key=value")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.compare == "negatives":
        run_negatives_experiment(out, seeds=args.seeds, steps=args.steps,
                                 first_steps=args.first_steps, overrides=args.overrides)
    elif args.compare == "distillation":
        run_distillation_experiment(out, seeds=args.seeds, steps=args.steps, teacher_steps=args.teacher_steps,
                                    weight=args.distillation_weight, overrides=args.overrides)
    elif args.compare == "sources":
        run_sources_experiment(out, seeds=args.seeds, steps=args.steps,
                               second_source_entities=args.second_source, overrides=args.overrides)
    elif args.compare == "merge":
        run_merge_experiment(out, seeds=args.seeds, steps=args.steps, overrides=args.overrides)
    else:
        run_experiment(out, alphas=args.alphas, seeds=args.seeds, steps=args.steps,
                       overrides=args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
