"""Export a trained checkpoint (run directory, checkpoints/step_N, or a converted folder) to a
Hugging Face folder with sentence-transformers files.

    hybridir export --checkpoint runs/retriever7b --output export/retriever7b \\
        --dtype bf16 [--verify]

Family, tokenizer, prompts and max_seq_length come from what the checkpoint records
(``provenance.json``, written on import and by the trainer): the prompts the training data were
tokenized with, else the source model's own (none if it had none). The flags override them.
A run trained with task instructions also gets one query prompt per evaluation task
("<mteb task>-query", what mteb looks up); --task-instructions adds or replaces them:

    hybridir export ... --task-instructions SciFact="Given a claim, find evidence"
"""

import argparse
import logging
import sys

from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.arguments import add_dataclass_flags, load_dataclass
from megatron_hybridir.convert.hf_export import ExportSettings, export_hf
from megatron_hybridir.convert.mappings import ConversionError

# Settings whose flags have their own syntax (TASK=INSTRUCTION pairs, the template's "\\n"); every
# other ExportSettings field is a flag made from the dataclass (help: its docstring).
_OWN_FLAGS = ("task_instructions", "instruction_template")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a run directory, checkpoints/step_N, or a converted folder")
    parser.add_argument("--output", required=True, help="the Hugging Face folder to write")
    add_dataclass_flags(parser, ExportSettings, skip=_OWN_FLAGS)
    parser.add_argument("--task-instructions", nargs="*", default=None, dest="task_pairs",
                        metavar="TASK=INSTRUCTION",
                        help="write per-task query prompts: the documented defaults plus these "
                             "(no value: the defaults); default: only if the training data had "
                             "instructions")
    parser.add_argument("--instruction-template", default=None, dest="template",
                        help='must end with {text} (default: the training data\'s, else '
                             '"Instruct: {task}\\nQuery: {text}")')
    # The flag's old name (it takes a family, not a layer kind): still accepted, with a warning.
    parser.add_argument("--architecture", dest="old_family", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.old_family is not None:
        if getattr(args, "family", None) is not None:
            parser.error("--architecture is the old name of --family; give only --family")
        print("warning: --architecture is deprecated and will be removed; use --family "
              f"{args.old_family}", file=sys.stderr)
        args.family = args.old_family
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    extra: dict = {}
    if args.task_pairs is not None:
        extra["task_instructions"] = {}
        for pair in args.task_pairs:
            name, sep, text = pair.partition("=")
            if not sep:
                parser.error(f"--task-instructions {pair!r}: expected TASK=INSTRUCTION")
            extra["task_instructions"][name] = text
    if args.template is not None:             # a shell passes "\n" as two characters
        extra["instruction_template"] = args.template.replace("\\n", "\n")
    try:
        settings = load_dataclass(ExportSettings, args, extra=extra)
        out = export_hf(args.checkpoint, args.output, settings)
    except (ConfigError, ConversionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
