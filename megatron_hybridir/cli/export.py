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
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.mappings import ConversionError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--tokenizer", help="folder with tokenizer.json (default: the recorded one; required "
                        "when the checkpoint records none, e.g. a run on synthetic data)")
    parser.add_argument("--query-prompt", default=None,
                        help="default: the training data's query prompt, else the source model's")
    parser.add_argument("--passage-prompt", default=None,
                        help="default: the training data's passage prompt, else the source model's")
    parser.add_argument("--task-instructions", nargs="*", default=None, metavar="TASK=INSTRUCTION",
                        help="write per-task query prompts: the documented defaults plus these "
                             "(no value: the defaults); default: only if the training data had "
                             "instructions")
    parser.add_argument("--instruction-template", default=None,
                        help='must end with {text} (default: the training data\'s, else '
                             '"Instruct: {task}\\nQuery: {text}")')
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                        help="cast weights (default: the dtype stored in the checkpoint)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="default: the source model's, else the run's seq_length")
    parser.add_argument("--family", default=None,
                        help="family to write (default: the recorded model.family)")
    # The flag's old name (it takes a family, not a layer kind): still accepted, with a warning.
    parser.add_argument("--architecture", dest="old_family", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--peft-adapter", action="store_true",
                        help="LoRA runs: also write the unmerged adapter (PEFT format) to lora_adapter/")
    parser.add_argument("--verify", action="store_true",
                        help="compare SentenceTransformer(output) with the Megatron model")
    args = parser.parse_args(argv)
    if args.old_family is not None:
        if args.family is not None:
            parser.error("--architecture is the old name of --family; give only --family")
        print("warning: --architecture is deprecated and will be removed; use --family "
              f"{args.old_family}", file=sys.stderr)
        args.family = args.old_family
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tasks = None
    if args.task_instructions is not None:
        tasks = {}
        for pair in args.task_instructions:
            name, sep, text = pair.partition("=")
            if not sep:
                parser.error(f"--task-instructions {pair!r}: expected TASK=INSTRUCTION")
            tasks[name] = text
    template = args.instruction_template
    if template is not None:             # a shell passes "\n" as two characters
        template = template.replace("\\n", "\n")
    try:
        out = export_hf(args.checkpoint, args.output, tokenizer=args.tokenizer,
                        query_prompt=args.query_prompt, passage_prompt=args.passage_prompt,
                        dtype=args.dtype, max_seq_length=args.max_seq_length,
                        family=args.family, overwrite=args.overwrite,
                        verify=args.verify, peft_adapter=args.peft_adapter,
                        task_instructions=tasks, instruction_template=template)
    except (ConversionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
