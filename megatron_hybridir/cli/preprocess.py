"""Tokenize parallel-QA sources into Megatron indexed datasets (thin CLI over data.preprocess).

Rows are the ids the exported sentence-transformers model computes at inference: the tokenizer's
own special tokens, the field's prompt, truncation to the field's max length, no padding.

    hybridir preprocess --sources train.jsonl mono_en.jsonl --languages en de zh \
        --tokenizer /models/mistral-7b --output data/tok --workers 8 \
        --max-length query=64 positive=256 negative=256 --prompt query="Query: " \
        --instruction train.jsonl="Given a question, retrieve passages that answer the question"

Every other PreprocessConfig field (megatron_hybridir/data/preprocess.py) is a flag of the same
name; a YAML file of them (--config) and field=value overrides also work.
"""

from __future__ import annotations

import argparse

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.arguments import (add_config_arguments, add_dataclass_flags,
                                                load_dataclass)
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess


def _pairs(parser: argparse.ArgumentParser, flag: str, values: list[str], cast=str,
           key_name: str = "field", what: str = "field one of query, positive, negative") -> dict:
    out = {}
    for value in values or []:
        key, sep, raw = value.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key] = cast(raw)
        except ValueError:
            parser.error(f"{flag} {value!r}: expected {key_name}=value with {what}"
                         + (" and an integer value" if cast is int else ""))
    return out


# Settings with their own flag syntax (field=value pairs, the template's "\\n") or kept only so old
# configs load; every other PreprocessConfig field is a flag made from the dataclass. Their flags
# store under other names (dest), so only what they mean reaches the config.
_OWN_FLAGS = ("prompts", "max_length", "instructions", "instruction_template", "append_eos",
              "special_tokens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(parser, PreprocessConfig, skip=_OWN_FLAGS)
    parser.add_argument("--max-length", nargs="*", dest="max_length_pairs",
                        help="field=tokens (query, positive, negative), special tokens included")
    parser.add_argument("--prompt", nargs="*", dest="prompt_pairs",
                        help='field=prefix, prepended as sentence-transformers does; field= for none')
    parser.add_argument("--instruction", nargs="*", dest="instruction_pairs",
                        help="source=instruction: a task instruction on that source's queries "
                             "(source exactly as in --sources)")
    parser.add_argument("--instruction-template", default=None, dest="template",
                        help='how an instruction becomes the query prompt; must end with {text} '
                             '(default: "Instruct: {task}\\nQuery: {text}")')
    # Both old switches are now the only behaviour (data/tokenizer.py): the tokenizer's own special
    # tokens, no appended EOS. Accepted so existing scripts keep running.
    parser.add_argument("--no-eos", action="store_true", dest="old_no_eos", help=argparse.SUPPRESS)
    parser.add_argument("--special-tokens", action="store_true", dest="old_special_tokens",
                        help=argparse.SUPPRESS)
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = PreprocessConfig(sources=[], languages=[], tokenizer="", output="")
    extra: dict = {}
    if args.max_length_pairs is not None:
        extra["max_length"] = {**defaults.max_length,
                               **_pairs(parser, "--max-length", args.max_length_pairs, int)}
    if args.prompt_pairs is not None:
        prompts = _pairs(parser, "--prompt", args.prompt_pairs)
        if "positive" in prompts:   # negatives are documents too: one document prompt at inference
            prompts.setdefault("negative", prompts["positive"])
        extra["prompts"] = {**defaults.prompts, **prompts}
    if args.instruction_pairs is not None:
        extra["instructions"] = _pairs(parser, "--instruction", args.instruction_pairs,
                                       key_name="source", what="source exactly as in --sources")
    if args.template is not None:
        # A shell passes "\n" as two characters; the template means a line break.
        extra["instruction_template"] = args.template.replace("\\n", "\n")
    try:
        config = load_dataclass(PreprocessConfig, args, config=args.config,
                                overrides=args.overrides, extra=extra)
    except ConfigError as err:
        parser.error(str(err))
    manifest = preprocess(config)
    print(f"wrote {manifest['num_items']} items to {config.output}")
    return 0


if __name__ == "__main__":
    main()
