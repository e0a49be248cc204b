"""Tokenize parallel-QA sources into Megatron indexed datasets (thin CLI over data.preprocess).

Rows are the ids the exported sentence-transformers model computes at inference: the tokenizer's
own special tokens, the field's prompt, truncation to the field's max length, no padding.

    hybridir preprocess --sources train.jsonl mono_en.jsonl --languages en de zh \
        --tokenizer /models/mistral-7b --output data/tok --workers 8 \
        --max-length query=64 positive=256 negative=256 --prompt query="Query: " \
        --instruction train.jsonl="Given a question, retrieve passages that answer the question"
"""

from __future__ import annotations

import argparse

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", required=True,
                        help="JSONL / Parquet paths or datasets names")
    parser.add_argument("--languages", nargs="+", required=True)
    parser.add_argument("--tokenizer", required=True,
                        help="HF tokenizer folder / tokenizer.json, or a SentencePiece .model")
    parser.add_argument("--output", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-length", nargs="*",
                        help="field=tokens (query, positive, negative), special tokens included")
    parser.add_argument("--prompt", nargs="*",
                        help='field=prefix, prepended as sentence-transformers does; field= for none')
    parser.add_argument("--instruction", nargs="*",
                        help="source=instruction: a task instruction on that source's queries "
                             "(source exactly as in --sources)")
    parser.add_argument("--instruction-template", default=None,
                        help='how an instruction becomes the query prompt; must end with {text} '
                             '(default: "Instruct: {task}\\nQuery: {text}")')
    # Both old switches are now the only behaviour (data/tokenizer.py): the tokenizer's own special
    # tokens, no appended EOS. Accepted so existing scripts keep running.
    parser.add_argument("--no-eos", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--special-tokens", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    args = parser.parse_args(argv)
    config = PreprocessConfig(sources=args.sources, languages=args.languages,
                              tokenizer=args.tokenizer, output=args.output, workers=args.workers,
                              on_error=args.on_error)
    config.max_length.update(_pairs(parser, "--max-length", args.max_length, int))
    prompts = _pairs(parser, "--prompt", args.prompt)
    if "positive" in prompts:      # negatives are documents too: one document prompt at inference
        prompts.setdefault("negative", prompts["positive"])
    config.prompts.update(prompts)
    config.instructions = _pairs(parser, "--instruction", args.instruction,
                                 key_name="source", what="source exactly as in --sources")
    if args.instruction_template is not None:
        # A shell passes "\n" as two characters; the template means a line break.
        config.instruction_template = args.instruction_template.replace("\\n", "\n")
    manifest = preprocess(config)
    print(f"wrote {manifest['num_items']} items to {args.output}")


if __name__ == "__main__":
    main()
