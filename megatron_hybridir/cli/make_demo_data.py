"""Write the synthetic 6-language demo corpus (train JSONL, LAReQA and BEIR test sets).

    hybridir make-demo-data --output data/demo [--seed 0] [--second-source 300]
"""

import argparse
import json
import sys

from megatron_hybridir.demo.data import make_demo_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--second-source", type=int, default=0, metavar="ENTITIES",
                        help="also write train.second.jsonl, a second source in its own question "
                             "and passage style about this many further entities (default 0: none)")
    args = parser.parse_args(argv)
    print(json.dumps(make_demo_data(args.output, seed=args.seed,
                                    second_source_entities=args.second_source), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
