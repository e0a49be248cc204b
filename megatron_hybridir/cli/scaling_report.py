"""Gather evaluation results.json files of runs at several model sizes (alphas, seeds) into
scaling.md + scaling.png (monolingual vs cross-lingual / multilingual metrics against parameters and
training FLOPs; one row per model and alpha, mean ± std over seeds).

    hybridir scaling-report --out runs/scaling runs/study-slurm/runs/*/eval/*/results.json
"""

import argparse
import sys
from pathlib import Path

from megatron_hybridir.study.scaling import scaling_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/scaling")
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args(argv)
    scaling_report(args.results, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
