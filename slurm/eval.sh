#!/usr/bin/env bash
#SBATCH --job-name=hybridir-eval
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
# Evaluate an exported model on one benchmark with every GPU of the node (encoding in a
# sentence-transformers process pool, FAISS flat search sharded over the GPUs):
#   sbatch slurm/eval.sh benchmark=xquad-r data=data/lareqa/xquad-r encoder.model=export/retriever30b
# Any EvalConfig override works (index=hnsw, float16_shards=true, output=...).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
GPUS=${SLURM_GPUS_ON_NODE:-8}
DEVICES=$(seq -s, -f "cuda:%g" 0 $((GPUS - 1)))
PY=${PYTHON:-python3}
exec "$PY" -m megatron_hybridir.evaluate "encoder.devices=[${DEVICES}]" "$@"
