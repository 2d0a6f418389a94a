#!/usr/bin/env bash
# Train under Slurm: one srun task per GPU (or per CPU process), across as many nodes as needed.
#
#   [GPUS=16 GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] \
#       [tools/train.py arguments ...]
#
# Environment: GPUS (tasks in all, default 8), GPUS_PER_NODE (tasks per node, default 8),
# CPUS_PER_TASK (default 5), GRES (generic resources per node, default gpu:$GPUS_PER_NODE; set
# GRES= on nodes without GPUs, where the tasks train with gloo on CPU), SRUN_ARGS (more srun
# options), PYTHON (default: python), MASTER_PORT (default: derived from the job id).
# Resume a preempted job with the same command plus --resume.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py arguments ...]" >&2
  exit 2
fi
PARTITION="$1"
JOB_NAME="$2"
CONFIG="$3"
shift 3
WORK_DIR_ARGS=()
if [[ $# -gt 0 && "$1" != -* ]]; then
  WORK_DIR_ARGS=(--work-dir "$1")
  shift
fi
GPUS="${GPUS:-8}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
CPUS_PER_TASK="${CPUS_PER_TASK:-5}"
GRES="${GRES-gpu:$GPUS_PER_NODE}"
PYTHON="${PYTHON:-python}"
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GRES_ARGS=()
if [[ -n "$GRES" ]]; then
  GRES_ARGS=(--gres="$GRES")
fi
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${GRES_ARGS[@]}" \
  --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
  "$PYTHON" -u "$TOOLS_DIR/train.py" "$CONFIG" "${WORK_DIR_ARGS[@]}" --launcher slurm "$@"
