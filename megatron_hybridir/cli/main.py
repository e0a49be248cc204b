"""``hybridir <subcommand> ...``: one installed command for every tool (console script).

Why it exists: a user of an installed package gets one discoverable entry point (``hybridir
--help``) instead of scripts in a repository folder. Each subcommand is the ``main`` of a module,
imported only when chosen, so ``hybridir evaluate`` still imports no Megatron-Core and
``hybridir --help`` imports nothing heavy.

What it does not do: parse a subcommand's own arguments; the module does (``hybridir SUB --help``).
"""

from __future__ import annotations

import importlib
import sys

# name -> (module whose main(argv) runs it, one line for the listing). Order: the pipeline's.
COMMANDS = {
    "quickstart": ("megatron_hybridir.demo.pipeline",
                   "the CPU quickstart on the synthetic demo corpus, end to end"),
    "finetune-demo": ("megatron_hybridir.demo.finetune",
                      "the pretrained-model example: all-MiniLM-L6-v2 fine-tuned on the demo"),
    "make-demo-data": ("megatron_hybridir.cli.make_demo_data",
                       "write the synthetic 6-language demo corpus"),
    "build-data": ("megatron_hybridir.cli.build_data",
                   "build training records (JSONL) from mMARCO, MIRACL, NQ (DPR) or BEIR"),
    "preprocess": ("megatron_hybridir.cli.preprocess",
                   "tokenize records into Megatron indexed datasets"),
    "mine": ("megatron_hybridir.cli.mine",
             "mine hard negatives with an HF / sentence-transformers model"),
    "convert": ("megatron_hybridir.cli.convert",
                "convert a Hugging Face model folder into a Megatron-Core checkpoint"),
    "train": ("megatron_hybridir.train", "train (or resume) an embedding model: YAML + key=value"),
    "export": ("megatron_hybridir.cli.export",
               "export a checkpoint to Hugging Face + sentence-transformers"),
    "merge": ("megatron_hybridir.cli.merge", "merge checkpoints (linear or slerp)"),
    "evaluate": ("megatron_hybridir.evaluate", "evaluate an exported model (no Megatron-Core)"),
    "experiment": ("megatron_hybridir.cli.experiment",
                   "mono vs cross vs hybrid batches (or random vs mined negatives) on the demo"),
    "study": ("megatron_hybridir.cli.study",
              "the size x alpha x seed study, local grid or Slurm plan"),
    "scaling-report": ("megatron_hybridir.cli.scaling_report",
                       "gather results.json files of several sizes into scaling.md / .png"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return ("usage: hybridir <subcommand> [arguments ...]\n\n"
            "Hybrid-batch multilingual dense retrievers on Megatron-Core.\n\nsubcommands:\n"
            + "\n".join(lines) + "\n\n`hybridir <subcommand> --help` describes one.")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"hybridir: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # argparse names the program after sys.argv[0]: `hybridir export --help` then prints
    # "usage: hybridir export ...", and its errors name the subcommand the user typed.
    sys.argv = [f"hybridir {name}", *rest]
    status = module.main(rest)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
