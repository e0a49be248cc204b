"""Monolingual (alpha=1) vs cross-lingual (alpha=0) vs hybrid (alpha=0.5) batches on the demo,
several seeds each, same budget; writes experiment.md, experiment.json and tradeoff.png.
``--compare negatives``: random vs mined hard negatives under hybrid batches instead
(experiment_negatives.md / .json).

    hybridir experiment --out runs/experiment [--seeds 1 2 3] [--steps 300] [key=value ...]
    hybridir experiment --compare negatives --out runs/negatives [--first-steps 100]
"""

import argparse
import sys
from pathlib import Path

from megatron_hybridir.study.experiment import run_experiment, run_negatives_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.0, 0.5])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare", choices=["batches", "negatives"], default="batches")
    parser.add_argument("--first-steps", type=int, default=100,
                        help="negatives: first-pass steps of the mined arm (inside --steps)")
    parser.add_argument("overrides", nargs="*", help="training config overrides, key=value")
    args = parser.parse_args(argv)
    if args.compare == "negatives":
        run_negatives_experiment(Path(args.out), seeds=args.seeds, steps=args.steps,
                                 first_steps=args.first_steps, overrides=args.overrides)
    else:
        run_experiment(Path(args.out), alphas=args.alphas, seeds=args.seeds, steps=args.steps,
                       overrides=args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
