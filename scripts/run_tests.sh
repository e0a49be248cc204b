#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, gloo multi-process, end-to-end) on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
# On the CPU also on a GPU machine: the multi-process tests start gloo ranks (two on one GPU would
# clash under NCCL), and the tolerances are those of CPU float32.
export CUDA_VISIBLE_DEVICES=""
PY=${PYTHON:-python3}
"$PY" -m pytest -q -p no:cacheprovider --durations=15 tests "$@"
