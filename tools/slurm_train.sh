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
# srun runs in the foreground: a job stopped by its time limit or preempted is resubmitted by
# hand, with the same command plus --resume. tools/slurm_submit.sh submits a batch job that
# checkpoints ahead of its time limit, requeues itself and resumes on its own.
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$TOOLS_DIR/_slurm_job.sh"
WORK_DIR_ARGS=()
if [[ -n "$WORK_DIR" ]]; then
  WORK_DIR_ARGS=(--work-dir "$WORK_DIR")
fi
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${GRES_ARGS[@]}" \
  --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$TOOLS_DIR/train.py" "$CONFIG" "${WORK_DIR_ARGS[@]}" \
  --launcher slurm "${TRAIN_ARGS[@]}"
