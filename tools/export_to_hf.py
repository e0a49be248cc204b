"""Export a trained checkpoint (run directory, checkpoints/step_N, or a converted folder) to a
Hugging Face folder with sentence-transformers files.

    python tools/export_to_hf.py --checkpoint runs/retriever7b --output export/retriever7b \\
        --dtype bf16 [--verify]

Family, tokenizer, prompts and max_seq_length come from what the checkpoint records
(``provenance.json``, written on import and by the trainer): the prompts the training data were
tokenized with, else the source model's own (none if it had none). The flags override them.
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
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                        help="cast weights (default: the dtype stored in the checkpoint)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="default: the source model's, else the run's seq_length")
    parser.add_argument("--architecture", default=None,
                        help="family to write (default: the recorded model.family)")
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
                        family=args.architecture, overwrite=args.overwrite,
                        verify=args.verify, peft_adapter=args.peft_adapter)
    except (ConversionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
