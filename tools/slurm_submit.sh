#!/usr/bin/env bash
# Submit training as a Slurm batch job that outlives its time limit and preemption: SIGNAL_LEAD
# seconds before the limit Slurm warns the job (or, preempting it, sends the tasks SIGTERM),
# every task checkpoints at the same iteration and stops, the job requeues itself, and when it
# starts again it resumes from that checkpoint on its own.
#
#   [GPUS=16 GPUS_PER_NODE=8 TIME=2-00:00:00] bash tools/slurm_submit.sh PARTITION JOB_NAME \
#       CONFIG [WORK_DIR] [tools/train.py arguments ...]
#
# Environment: GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES, SRUN_ARGS, PYTHON, MASTER_PORT as for
# tools/slurm_train.sh; TIME (sbatch --time, default: the partition's limit), SIGNAL_LEAD
# (seconds, default 300), SBATCH_ARGS (more sbatch options, e.g. "--account=A --qos=Q").
# WORK_DIR defaults to ./work_dirs/<config name>/<JOB_NAME>; the job's output goes to
# WORK_DIR/slurm-<job id>.out, appended to at every start. Each start resumes from the newest
# checkpoint in WORK_DIR (or starts fresh if there is none), so the same command submitted again
# also continues a stopped run; a new JOB_NAME or WORK_DIR starts a new one.
# Checkpoint and requeue now: scancel --batch --signal=USR1 JOB_ID. Checkpoint and stop without
# requeueing: scancel JOB_ID (the tasks get SIGTERM). The batch script: tools/_slurm_batch.sh.
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$TOOLS_DIR/_slurm_job.sh"
if [[ ! -f "$CONFIG" ]]; then
  echo "$0: config $CONFIG: no such file" >&2
  exit 2
fi
if [[ -z "$WORK_DIR" ]]; then
  CONFIG_NAME="$(basename "$CONFIG")"
  WORK_DIR="work_dirs/${CONFIG_NAME%.py}/$JOB_NAME"
fi
SIGNAL_LEAD="${SIGNAL_LEAD:-300}"
# Absolute paths: every start of the job finds the same config and checkpoints, whatever its
# working directory. The job writes its output into WORK_DIR from its first start on.
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
mkdir -p "$WORK_DIR"
WORK_DIR="$(cd "$WORK_DIR" && pwd)"
TIME_ARGS=()
if [[ -n "${TIME:-}" ]]; then
  TIME_ARGS=(--time="$TIME")
fi
# B: sends the warning to the batch shell only, which passes it on to the tasks through srun
# and so knows that a stop is a warned one (requeue) rather than Slurm ending the job (SIGTERM).
# SIGNAL_LEAD reaches the batch script, which gives the tasks that long to stop together.
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
JOB_ID="$(SIGNAL_LEAD="$SIGNAL_LEAD" sbatch --parsable --partition="$PARTITION" \
  --job-name="$JOB_NAME" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" "${GRES_ARGS[@]}" "${TIME_ARGS[@]}" --requeue \
  --signal="B:USR1@$SIGNAL_LEAD" --open-mode=append --output="$WORK_DIR/slurm-%j.out" \
  ${SBATCH_ARGS:-} "$TOOLS_DIR/_slurm_batch.sh" "$TOOLS_DIR/train.py" "$CONFIG" "$WORK_DIR" \
  "${TRAIN_ARGS[@]}")"
JOB_ID="${JOB_ID%%;*}"  # --parsable prints "id;cluster" on multi-cluster setups
echo "Submitted batch job $JOB_ID"
echo "work dir: $WORK_DIR; output: $WORK_DIR/slurm-$JOB_ID.out" >&2
