#!/usr/bin/env bash
# Behaviour check for refactors (issue 27, as issue 20 did): a 4-step, two-process (TP=2, GradCache)
# CPU training of examples/tiny_cpu.yaml on a small synthetic corpus; writes the per-step loss and
# grad norm of metrics.jsonl to OUT. With REF (an earlier OUT, e.g. from main), compares them
# exactly and prints "identical" or "different" (exit 1).
#
#   bash scripts/behaviour_check.sh OUT [REF]
# Run it from the tree to check (it puts that tree first on PYTHONPATH).
set -euo pipefail
OUT=${1:?usage: behaviour_check.sh OUT [REF]}
REF=${2:-}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=""
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The corpus and word-level tokenizer of tests/e2e/test_train_resume.py, built the same way.
# (A file, not stdin: preprocessing's worker processes re-import the main module.)
cat > "$WORK/make_data.py" <<'PYEOF'
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from tests.unit.data.conftest import LANGS, make_records
def main(tmp):
    (tmp / "train.jsonl").write_text("\n".join(json.dumps(r) for r in make_records(40)) + "\n")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(tmp / "train.jsonl")], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"]))
    (tmp / "tok").mkdir()
    tok.save(str(tmp / "tok" / "tokenizer.json"))
    preprocess(PreprocessConfig(sources=[str(tmp / "train.jsonl")], languages=LANGS, tokenizer=str(tmp / "tok"),
                                output=str(tmp / "out"), workers=1,
                                max_length={"query": 16, "positive": 24, "negative": 24}), progress=False)

if __name__ == "__main__":
    main(Path(sys.argv[1]))
PYEOF
"$PY" "$WORK/make_data.py" "$WORK" > "$WORK/data.log" 2>&1 || { tail -30 "$WORK/data.log"; exit 2; }
"$PY" -m torch.distributed.run --nproc_per_node 2 --master_port "${PORT:-29517}" \
  -m megatron_hybridir.train --config examples/tiny_cpu.yaml "data.path=$WORK/out" \
  training.train_steps=4 training.log_interval=1 "checkpoint.dir=$WORK/run" > "$WORK/log" 2>&1 \
  || { tail -30 "$WORK/log"; exit 2; }
"$PY" -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print("\n".join(json.dumps({k: r.get(k) for k in ("step", "loss", "grad_norm")}) for r in rows))' \
  "$WORK/run/metrics.jsonl" > "$OUT"
cat "$OUT"
if [ -n "$REF" ]; then
  if cmp -s "$OUT" "$REF"; then echo identical; else echo different; diff "$REF" "$OUT"; exit 1; fi
fi
