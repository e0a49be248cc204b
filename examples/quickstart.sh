#!/usr/bin/env bash
# CPU quickstart, the embedded default end to end: set up, generate the synthetic 6-language corpus,
# train a SentencePiece tokenizer, preprocess into Megatron indexed datasets, train the tiny
# bidirectional embedder with hybrid batches (alpha 0.5) at TP=2 over two gloo processes, export to
# Hugging Face + sentence-transformers, evaluate (mono / cross / multilingual mAP, language bias),
# and print the results table (plots under runs/quickstart/hybrid/eval/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES=""   # the CPU quickstart: the README's numbers on any machine
PY=${PYTHON:-python3}
"$PY" -m megatron_hybridir.demo.pipeline --out runs/quickstart "$@"
