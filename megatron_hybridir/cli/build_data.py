"""Build training records (JSONL) from public sources (thin CLI over data.sources.build).

    hybridir build-data mmarco --root mmarco/data/v2 --languages en de zh \
        --triples mmarco/data/triples.train.ids.small.tsv --output data/mmarco.jsonl \
        --leak-check beir beir/msmarco dev --leak-check lareqa xquad-r
    hybridir build-data miracl --source miracl-train-sw.jsonl --lang sw \
        --output data/miracl_sw.jsonl --leak-check miracl miracl
    hybridir build-data dpr --source biencoder-nq-train.json \
        --output data/nq.jsonl --leak-check nq nq
    hybridir build-data beir --folder beir/msmarco --output data/msmarco_en.jsonl

Each writes ``<output>`` and ``<output stem>.report.json`` (kept, dropped, skipped and trimmed
counts per reason, leakage per benchmark) and prints the summary. ``--hub NAME`` reads the
source through ``datasets.load_dataset`` instead of local files (downloads).
"""

from __future__ import annotations

import argparse

from megatron_hybridir.data.sources import build


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--output", required=True, help="the .jsonl file to write")
    sub.add_argument("--leak-check", nargs="+", action="append", default=[],
                     metavar=("KIND", "PATH [SPLIT]"),
                     help="an evaluation benchmark whose queries no training text may equal: "
                          "beir FOLDER [split], nq FOLDER [qa file], miracl ROOT [split], "
                          "lareqa|xquad-r|mlqa-r FOLDER; repeat for several")
    sub.add_argument("--on-leak", choices=["drop", "fail"], default="drop",
                     help="drop leaked items (counted per benchmark) or stop at the first")
    sub.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                     help="stop at a malformed line (naming it) or count and skip it")
    sub.add_argument("--hub", help="a datasets name to read instead of local files (downloads)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subs = parser.add_subparsers(dest="kind", required=True)
    mm = subs.add_parser("mmarco", help="mMARCO -> parallel records with hard negatives")
    mm.add_argument("--root", help="folder with collections/ and queries/train/ (data/v2)")
    mm.add_argument("--languages", nargs="+", required=True, help="ISO codes, e.g. en de zh")
    mm.add_argument("--triples", help="triples.train.ids.small.tsv (qid pos_pid neg_pid)")
    mm.add_argument("--qrels", help="qrels.train.tsv (qid 0 pid 1)")
    mm.add_argument("--max-negatives", type=int, default=8)
    mi = subs.add_parser("miracl", help="MIRACL training split -> monolingual records")
    mi.add_argument("--source", help="the language's training JSONL (.jsonl or .jsonl.gz)")
    mi.add_argument("--lang", required=True)
    mi.add_argument("--max-negatives", type=int, default=8)
    dp = subs.add_parser("dpr", help="NQ in DPR training form -> English monolingual records")
    dp.add_argument("--source", help="biencoder-nq-train.json (.json or .json.gz)")
    dp.add_argument("--max-negatives", type=int, default=8)
    dp.add_argument("--use-negative-ctxs", action="store_true",
                    help="also take negative_ctxs after hard_negative_ctxs")
    be = subs.add_parser("beir", help="a BEIR folder with qrels/train.tsv -> monolingual records")
    be.add_argument("--folder")
    be.add_argument("--lang", default="en")
    be.add_argument("--split", default="train")
    for sub in (mm, mi, dp, be):
        _common(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    leak_checks = []
    for spec in args.leak_check:
        if len(spec) not in (2, 3):
            parser.error(f"--leak-check {' '.join(spec)}: expected KIND PATH [SPLIT]")
        leak_checks.append((spec[0], spec[1], spec[2] if len(spec) == 3 else None))
    common = dict(output=args.output, hub=args.hub, leak_checks=leak_checks,
                  on_leak=args.on_leak, on_error=args.on_error)
    if args.kind == "mmarco":
        build.build_mmarco(root=args.root, languages=args.languages, triples=args.triples,
                           qrels=args.qrels, max_negatives=args.max_negatives, **common)
    elif args.kind == "miracl":
        build.build_miracl(source=args.source, lang=args.lang,
                           max_negatives=args.max_negatives, **common)
    elif args.kind == "dpr":
        build.build_dpr(source=args.source, max_negatives=args.max_negatives,
                        use_negative_ctxs=args.use_negative_ctxs, **common)
    else:
        build.build_beir(folder=args.folder, lang=args.lang, split=args.split, **common)


if __name__ == "__main__":
    main()
