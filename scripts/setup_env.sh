#!/usr/bin/env bash
# Install the package and its test dependencies into the current Python (3.11).
# torch is pinned first: on the CPU machines the 2.13.0 CPU build is on disk, and letting
# megatron-core pull an unpinned torch would download a multi-GB CUDA build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
