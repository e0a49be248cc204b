"""Mine hard negatives for training records with any HF / sentence-transformers model.

    hybridir mine --input train.jsonl --output train.mined.jsonl \
        --languages en de fr --model path/to/model --num-negatives 4 --range 10 100 \
        [--relative-margin 0.95 | --absolute-margin 0.05] [--sampling random|top] [--seed 0] \
        [--corpus extra.jsonl] [--index exact|ivf|hnsw] [--work-dir DIR] [--max-empty-fraction 0.5] \
        [--teacher cross-encoder:FOLDER | bi-encoder | bi-encoder:FOLDER]

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

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.mining.miner import MiningConfig, mine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--languages", nargs="+", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--num-negatives", type=int, default=4)
    parser.add_argument("--range", type=int, nargs=2, default=[0, 100], metavar=("MIN", "MAX"))
    parser.add_argument("--relative-margin", type=float)
    parser.add_argument("--absolute-margin", type=float)
    parser.add_argument("--sampling", default="random", choices=["random", "top"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-depth", type=int)
    parser.add_argument("--corpus", nargs="*", default=[])
    parser.add_argument("--index", default="exact")
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--query-block", type=int, default=16_384)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--float16", action="store_true")
    parser.add_argument("--query-prompt")
    parser.add_argument("--passage-prompt")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--split", default="train")
    parser.add_argument("--work-dir")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--max-empty-fraction", type=float, default=0.5,
                        help="fail when, in a language, more than this fraction of the queries got "
                             "no negative (1: accept any result)")
    parser.add_argument("--teacher", help="cross-encoder:FOLDER, bi-encoder (the --model) or "
                        "bi-encoder:FOLDER: write teacher_scores for distillation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = MiningConfig(
        input=args.input, output=args.output, languages=args.languages, model=args.model,
        num_negatives=args.num_negatives, range_min=args.range[0], range_max=args.range[1],
        relative_margin=args.relative_margin, absolute_margin=args.absolute_margin,
        sampling=args.sampling, seed=args.seed, search_depth=args.search_depth,
        corpus=args.corpus, index=args.index, shard_size=args.shard_size,
        query_block=args.query_block, batch_size=args.batch_size, float16=args.float16,
        query_prompt=args.query_prompt, passage_prompt=args.passage_prompt,
        max_length=args.max_length, split=args.split, work_dir=args.work_dir,
        progress=not args.no_progress, max_empty_fraction=args.max_empty_fraction,
        teacher=args.teacher)
    try:
        mine(config)
    except (DataError, OSError) as err:        # OSError: a model folder that cannot be loaded
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
