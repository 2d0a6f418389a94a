# The arguments and resources of tools/slurm_train.sh and tools/slurm_submit.sh, which source
# this file with their arguments: PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py arguments ...].
# Sets PARTITION, JOB_NAME, CONFIG, WORK_DIR (empty if not given), TRAIN_ARGS, the resources
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK and GRES from the environment, and GRES_ARGS.
if [[ $# -lt 3 ]]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py arguments ...]" >&2
  exit 2
fi
PARTITION="$1"
JOB_NAME="$2"
CONFIG="$3"
shift 3
WORK_DIR=
if [[ $# -gt 0 && "$1" != -* ]]; then
  WORK_DIR="$1"
  shift
fi
TRAIN_ARGS=("$@")
GPUS="${GPUS:-8}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
CPUS_PER_TASK="${CPUS_PER_TASK:-5}"
GRES="${GRES-gpu:$GPUS_PER_NODE}"
GRES_ARGS=()
if [[ -n "$GRES" ]]; then
  GRES_ARGS=(--gres="$GRES")
fi
