#!/usr/bin/env bash
# CPU quickstart: set up, then train the tiny bidirectional embedder with global-negative InfoNCE
# at tensor parallel size 2 over two gloo processes (Megatron-Core on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
"$PY" -m torch.distributed.run --nproc-per-node 2 -m megatron_hybridir.training.smoke \
    parallel.tensor_model_parallel_size=2 "$@"
