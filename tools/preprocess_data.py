"""Tokenize parallel-QA sources into Megatron indexed datasets (thin CLI over data.preprocess).

    python tools/preprocess_data.py --sources train.jsonl mono_en.jsonl --languages en de zh \
        --tokenizer /models/mistral-7b --output data/tok --workers 8 \
        --max-length query=64 positive=256 negative=256 --prompt query="Query: "
"""

from __future__ import annotations

import argparse

from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess


def _pairs(values: list[str], cast=str) -> dict:
    out = {}
    for value in values or []:
        key, _, raw = value.partition("=")
        out[key] = cast(raw)
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
    parser.add_argument("--max-length", nargs="*", help="field=tokens (query, positive, negative)")
    parser.add_argument("--prompt", nargs="*", help="field=prefix")
    parser.add_argument("--no-eos", action="store_true", help="do not append EOS")
    parser.add_argument("--special-tokens", action="store_true",
                        help="wrap texts in the tokenizer's special tokens (<s> ... </s>, [CLS] ... "
                             "[SEP]) instead of appending EOS: for XLM-R / BERT / LaBSE encoders")
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    args = parser.parse_args(argv)
    config = PreprocessConfig(sources=args.sources, languages=args.languages,
                              tokenizer=args.tokenizer, output=args.output, workers=args.workers,
                              append_eos=not (args.no_eos or args.special_tokens),
                              special_tokens=args.special_tokens, on_error=args.on_error)
    config.max_length.update(_pairs(args.max_length, int))
    config.prompts.update(_pairs(args.prompt))
    manifest = preprocess(config)
    print(f"wrote {manifest['num_items']} items to {args.output}")


if __name__ == "__main__":
    main()
