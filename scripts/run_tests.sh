#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, gloo multi-process, end-to-end) on the CPU.
#   bash scripts/run_tests.sh            # set up, then every tier
#   bash scripts/run_tests.sh --fast     # no set-up: the unit tier less tests marked slow (< 2 min
#                                        # on the 2-core machine); run the full command once first
# Further arguments go to pytest (e.g. -m "unit or distributed", -k lora, tests/unit/data).
set -euo pipefail
cd "$(dirname "$0")/.."
FAST=0
if [[ "${1:-}" == "--fast" ]]; then
    FAST=1
    shift
fi
[[ $FAST == 1 ]] || bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
# On the CPU also on a GPU machine: the multi-process tests start gloo ranks (two on one GPU would
# clash under NCCL), and the tolerances are those of CPU float32.
export CUDA_VISIBLE_DEVICES=""
PY=${PYTHON:-python3}
if [[ $FAST == 1 ]]; then
    "$PY" -m pytest -q -p no:cacheprovider --durations=10 -m "unit and not slow" tests/unit "$@"
else
    "$PY" -m pytest -q -p no:cacheprovider --durations=15 tests "$@"
fi
