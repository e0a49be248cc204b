"""Export a trained checkpoint (run directory, checkpoints/step_N, or a converted folder) to a
Hugging Face folder with sentence-transformers files.

    python tools/export_to_hf.py --checkpoint runs/retriever7b --output export/retriever7b \\
        --tokenizer /models/Mistral-7B-v0.1 --dtype bf16 [--verify]
"""

import argparse
import logging
import sys
from pathlib import Path

from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.mappings import ConversionError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--tokenizer", help="folder with tokenizer.json (default: recorded at import)")
    parser.add_argument("--query-prompt", default="Query: ")
    parser.add_argument("--passage-prompt", default="Passage: ")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                        help="cast weights (default: as stored)")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--architecture", default=None, help="llama | mistral | qwen2 | qwen3")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--peft-adapter", action="store_true",
                        help="LoRA runs: also write the unmerged adapter (PEFT format) to lora_adapter/")
    parser.add_argument("--verify", action="store_true",
                        help="compare SentenceTransformer(output) with the Megatron model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = export_hf(args.checkpoint, args.output, tokenizer=args.tokenizer,
                        query_prompt=args.query_prompt, passage_prompt=args.passage_prompt,
                        dtype=args.dtype, max_seq_length=args.max_seq_length,
                        architecture=args.architecture, overwrite=args.overwrite,
                        peft_adapter=args.peft_adapter)
        if args.verify:
            from megatron_hybridir.convert.verify import verify_export
            verify_export(Path(args.checkpoint), out)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
