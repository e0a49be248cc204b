"""Merge two or more checkpoints of one architecture (run directories, checkpoints/step_N folders
or converted folders, saved at any TP / PP) into one converted folder.

    hybridir merge runs/a runs/b --weights 0.7 0.3 --output merged/ab
    hybridir merge runs/a runs/b --method slerp --weights 0.5 0.5 --output merged/s

``linear``: the weighted average of every tensor. ``slerp`` (two inputs): spherical interpolation
of each tensor, t = the second input's weight (linear where the two are nearly parallel). Weights
are normalised to sum 1. The output starts a run (checkpoint.init_from=<output>), exports
(hybridir export) and records the inputs and weights in its provenance.json.
"""

import argparse
import logging
import sys

from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.convert.merge import METHODS, merge_checkpoints


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="two or more checkpoints to merge")
    parser.add_argument("--output", required=True)
    parser.add_argument("--method", choices=METHODS, default="linear")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one per checkpoint, normalised to sum 1 (default: equal)")
    parser.add_argument("--tensor-parallel", type=int, default=1,
                        help="TP of the runs the output will start (its vocabulary padding)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None,
                        help="default: the inputs' stored dtype when they agree, else fp32")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = merge_checkpoints(args.checkpoints, args.output, method=args.method,
                                weights=args.weights, tensor_parallel=args.tensor_parallel,
                                dtype=args.dtype, overwrite=args.overwrite)
    except (ConversionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
