#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, gloo multi-process, end-to-end) on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
"$PY" -m pytest -q -p no:cacheprovider --durations=15 tests "$@"
