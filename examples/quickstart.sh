#!/usr/bin/env bash
# CPU quickstart: set up, then train the tiny bidirectional embedder with hybrid batches,
# GradCache global negatives and checkpoints, at tensor parallel size 2 over two gloo processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
rm -rf runs/quickstart
"$PY" -m torch.distributed.run --nproc-per-node 2 -m megatron_hybridir.train \
    --config examples/tiny_cpu.yaml checkpoint.dir=runs/quickstart "$@"
"$PY" - <<'PYEOF'
import json
rows = [json.loads(line) for line in open("runs/quickstart/metrics.jsonl")]
w = min(10, len(rows))
mean = lambda key, part: sum(r[key] for r in part) / len(part)
print(f"quickstart: mean of first/last {w} steps: loss {mean('loss', rows[:w]):.4f} -> "
      f"{mean('loss', rows[-w:]):.4f}, in-batch acc@1 {mean('accuracy', rows[:w]):.3f} -> "
      f"{mean('accuracy', rows[-w:]):.3f}; run directory runs/quickstart")
PYEOF
