"""Mine hard negatives for training records with any HF / sentence-transformers model.

    hybridir mine --input train.jsonl --output train.mined.jsonl \
        --languages en de fr --model path/to/model --num-negatives 4 --range 10 100 \
        [--relative-margin 0.95 | --absolute-margin 0.05] [--sampling random|top] [--seed 0] \
        [--corpus extra.jsonl] [--index exact|ivf|hnsw] [--work-dir DIR] [--max-empty-fraction 0.5] \
        [--teacher cross-encoder:FOLDER | bi-encoder | bi-encoder:FOLDER] [--config mining.yaml] [field=value ...]

Every setting of MiningConfig (megatron_hybridir/mining/miner.py) is a flag of the same name (help
below, from its docstring); a YAML file of them (--config) and field=value overrides also work.

Per language, a query searches that language's passages; the item's positive in every language
and its copies are never mined (see megatron_hybridir/mining). Rerun the same command to resume.
With --teacher, each record also gets `teacher_scores` (per language: the positive's score, then
each mined negative's) for distillation (loss.distillation).
Writes the records with `negatives` filled, <output>.report.json and <output>.scores.png.
Languages whose queries got fewer negatives than asked are logged; when more than
--max-empty-fraction of a language's queries got none, nothing is written but the report and the
exit status is 2.
"""

import argparse
import logging
import sys

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.arguments import (add_config_arguments, add_dataclass_flags,
                                                load_dataclass)
from megatron_hybridir.data.readers import DataError
from megatron_hybridir.mining.miner import MiningConfig, mine


def build_parser() -> argparse.ArgumentParser:
    """Every MiningConfig field is a flag (``config/arguments.py``: help from its docstring,
    default from the dataclass); ``--range MIN MAX`` sets range_min and range_max together."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--range", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="survivor ranks [MIN, MAX) form the window (range_min / range_max; "
                             "default: 0 100)")
    add_dataclass_flags(parser, MiningConfig, skip=("range_min", "range_max"))
    add_config_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = {} if args.range is None else {"range_min": args.range[0], "range_max": args.range[1]}
    try:
        config = load_dataclass(MiningConfig, args, config=args.config, overrides=args.overrides,
                                extra=extra)
        mine(config)
    except (ConfigError, DataError, OSError) as err:   # OSError: a model that cannot be loaded
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
