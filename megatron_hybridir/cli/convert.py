"""Convert a Hugging Face Llama / Mistral / Qwen2 / Qwen3 / XLM-R / BERT (LaBSE) folder into a
Megatron-Core checkpoint.

    hybridir convert --hf /models/Mistral-7B-v0.1 --output ckpt/mistral7b \\
        --tensor-parallel 8 --pooling mean [--verify]  # weights kept in their stored dtype
    hybridir convert --hf /models/xlm-roberta-large --output ckpt/xlmr \\
        --dtype bf16 --pooling mean                 # a deliberate cast (fp32 source -> bf16)
    hybridir convert --hf /models/LaBSE --output ckpt/labse \\
        --pooling first --pooler        # LaBSE: CLS + dense + tanh + normalisation

Start training from it with ``checkpoint.init_from=ckpt/mistral7b``: the run takes its whole model
section from ``ckpt/mistral7b/model.yaml`` (YAML may change only dropout and the pooling head), and
``provenance.json`` records the family, tokenizer and sentence-transformers pipeline for export.
"""

import argparse
import logging
import sys

from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.pooling import POOLINGS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf", required=True, help="HF model folder (config.json + safetensors)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--tensor-parallel", type=int, default=1, help="TP the run will use")
    parser.add_argument("--pipeline-parallel", type=int, default=1, help="PP the run will use")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                        help="cast the weights (default: keep the dtype they are stored in)")
    parser.add_argument("--pooling", default=None, choices=list(POOLINGS),
                        help="default: the model's sentence-transformers pooling, else mean")
    parser.add_argument("--attention", default="bidirectional", choices=["bidirectional", "causal"])
    parser.add_argument("--pooler", action="store_true",
                        help="keep a BERT model's pooler (dense + tanh) after pooling, as LaBSE does")
    parser.add_argument("--projection-dim", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--verify", action="store_true", help="compare hidden states with HF and "
                        "check the HF -> Megatron -> HF round trip (exact unless --dtype casts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = import_hf(args.hf, args.output, tensor_parallel=args.tensor_parallel,
                        pipeline_parallel=args.pipeline_parallel, dtype=args.dtype,
                        overwrite=args.overwrite, progress=True, verify=args.verify,
                        head=ImportHead(pooling=args.pooling, attention=args.attention,
                                        projection_dim=args.projection_dim, pooler=args.pooler))
    except (ConversionError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
