#!/usr/bin/env bash
#SBATCH --job-name=hybridir-30b
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --signal=USR1@600
#SBATCH --output=logs/%x-%j.out
# A requeued job writes the same log file again: append, so the preemption's lines stay.
#SBATCH --open-mode=append
# Train the 30b retriever: sbatch slurm/train_30b.sh [key.sub=value ...]
# logs/ must exist before sbatch (Slurm opens the output file before the script runs).
# Environment: CONFIG (default examples/retriever_30b.yaml), RUN_DIR, CONTAINER.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
export CONFIG=${CONFIG:-examples/retriever_30b.yaml}
# shellcheck source=slurm/launch.sh
source slurm/launch.sh "$@"
