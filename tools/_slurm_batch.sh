#!/usr/bin/env bash
# The batch script of tools/slurm_submit.sh, which submits it with --requeue and
# --signal=B:USR1@SIGNAL_LEAD; Slurm runs a copy of it at every start of the job.
#
#   _slurm_batch.sh TRAIN_PY CONFIG WORK_DIR [tools/train.py arguments ...]
#
# Slurm's warning reaches this shell only; it passes it on to the tasks through srun, and
# tools/train.py checkpoints and exits with 75 on every task. Then: 75 after the warning ->
# scontrol requeue, the job starts again and resumes (train.py always gets --resume); 0 -> the
# run finished; anything else -> the run failed, its status is reported and the job ends.
# Preemption (PreemptMode=REQUEUE) sends SIGTERM to the tasks only: they checkpoint and exit with
# 75 within the partition's GraceTime, and since a job that ends by itself is not requeued by
# Slurm, this script requeues it (the job's PreemptTime says it was preempted). A SIGTERM to this
# shell is Slurm ending the job (scancel, the time limit): the tasks get it too and checkpoint,
# and the job is not requeued.
set -uo pipefail

PREEMPTED_EXIT_STATUS=75  # cvt_mm.engine.preemption.PREEMPTED_EXIT_STATUS
TRAIN_PY="$1"
CONFIG="$2"
WORK_DIR="$3"
shift 3

log() { echo "[slurm_submit] $(date '+%F %T') job $SLURM_JOB_ID: $*"; }

warned=0
ending=0
srun_pid=
pass_on_warning() {
  warned=1
  log "warning signal: the tasks checkpoint and stop"
  if [[ -n "$srun_pid" ]]; then
    kill -USR1 "$srun_pid"  # srun forwards it to every task
  fi
}
trap pass_on_warning USR1
trap 'ending=1; log "SIGTERM: Slurm is ending the job"' TERM

log "start $(( ${SLURM_RESTART_COUNT:-0} + 1 )) on $SLURM_JOB_NODELIST"
# Every task's exit is waited for, up to SIGNAL_LEAD seconds after the first: a task that ends
# early must not have the others killed while they still save (srun --kill-on-bad-exit would).
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
srun --kill-on-bad-exit=0 --wait="${SIGNAL_LEAD:-300}" ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$TRAIN_PY" "$CONFIG" --work-dir "$WORK_DIR" --launcher slurm \
  --resume "$@" &
srun_pid=$!
# A trapped signal ends `wait` early: wait until srun has exited, then read its status.
while kill -0 "$srun_pid" 2>/dev/null; do
  wait "$srun_pid"
done
wait "$srun_pid"
status=$?

if [[ $status == 0 ]]; then
  log "training finished"
  exit 0
fi
# scontrol shows PreemptTime=None until Slurm selects the job for preemption.
preempted() { scontrol show job -o "$SLURM_JOB_ID" | grep -qE '(^| )PreemptTime=[0-9]'; }
if [[ $status == "$PREEMPTED_EXIT_STATUS" && $ending == 0 ]] && { [[ $warned == 1 ]] || preempted; }; then
  if [[ $warned == 0 ]]; then
    log "preempted: the tasks checkpointed on Slurm's SIGTERM"
  fi
  log "checkpoint saved in $WORK_DIR; requeueing"
  if scontrol requeue "$SLURM_JOB_ID"; then
    exit 0
  fi
  log "scontrol requeue refused (see above): submit the same command again to resume"
  exit "$status"
fi
if [[ $status == "$PREEMPTED_EXIT_STATUS" ]]; then
  log "stopped on a signal, checkpoint saved in $WORK_DIR; not requeued from here" \
    "(submit the same command again to resume)"
else
  log "training failed with exit status $status; not requeued"
fi
exit "$status"
