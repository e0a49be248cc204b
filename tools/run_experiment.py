"""Monolingual (alpha=1) vs cross-lingual (alpha=0) vs hybrid (alpha=0.5) batches on the demo,
several seeds each, same budget; writes experiment.md, experiment.json and tradeoff.png.

    python tools/run_experiment.py --out runs/experiment [--seeds 1 2 3] [--steps 300] [key=value ...]
"""

import argparse
from pathlib import Path

from megatron_hybridir.demo.experiment import run_experiment

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.0, 0.5])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("overrides", nargs="*", help="training config overrides, key=value")
    args = parser.parse_args()
    run_experiment(Path(args.out), alphas=args.alphas, seeds=args.seeds, steps=args.steps,
                   overrides=args.overrides)
