#!/usr/bin/env bash
# Shared body of the sbatch scripts (sourced): one task per GPU through srun, optional container,
# NCCL/CUDA environment, checkpoint directory, and automatic requeue after a preemption save.
# Inputs: CONFIG (recipe), RUN_DIR (checkpoints + logs), CONTAINER (optional image), extra args.
set -euo pipefail

: "${CONFIG:?set CONFIG to a recipe YAML}"
RUN_DIR=${RUN_DIR:-runs/${SLURM_JOB_NAME:-hybridir}}
mkdir -p "$RUN_DIR" logs

# Megatron overlaps TP communication with compute only with one hardware queue per device.
export CUDA_DEVICE_MAX_CONNECTIONS=1
export NCCL_ASYNC_ERROR_HANDLING=1
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
# The trainer reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (runtime/distributed.launch_env);
# rank 0's host is the rendezvous, expanded by Slurm itself (node lists such as gpu[1-4]-ib are
# beyond a hand parser); a fixed port per job, the same after a requeue (same job id).
if [[ -z "${MASTER_ADDR:-}" && -n "${SLURM_JOB_NODELIST:-}" ]]; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    export MASTER_ADDR
fi
export MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}

cmd=(python -m megatron_hybridir.train --config "$CONFIG" "checkpoint.dir=$RUN_DIR" "$@")
srun_args=(--kill-on-bad-exit=1 --cpu-bind=none)
if [[ -n "${CONTAINER:-}" ]]; then
    srun_args+=(--container-image="$CONTAINER" --container-mounts="$PWD:$PWD"
                --container-workdir="$PWD")
fi

srun "${srun_args[@]}" "${cmd[@]}"

# The trainer leaves RUN_DIR/requeue when SIGUSR1/SIGTERM made it save before the time limit.
# `scontrol requeue` ends this script (the job goes back to the queue under the same id, eligible
# after the cluster's cred_expire, 120 s by default; SLURM_RESTART_COUNT counts the requeues) and
# needs the job submitted with --requeue or the cluster's JobRequeue=1.
if [[ -f "$RUN_DIR/requeue" && -n "${SLURM_JOB_ID:-}" ]]; then
    echo "preempted: requeueing job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) to resume from $(cat "$RUN_DIR/checkpoints/latest")"
    scontrol requeue "$SLURM_JOB_ID"
fi
