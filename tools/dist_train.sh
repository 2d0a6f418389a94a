#!/usr/bin/env bash
# Train with N processes per machine, on one or several machines, on GPUs or (gloo) on CPU.
#
#   bash tools/dist_train.sh CONFIG N [tools/train.py arguments ...]
#
# Several machines: run the same command on each, with the same MASTER_ADDR (the address of the
# machine with NODE_RANK=0) and PORT, e.g. on two machines:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#
# Environment: NNODES (default 1), NODE_RANK (default 0), MASTER_ADDR (default 127.0.0.1), PORT
# (one machine: a free port by default; several: required), PYTHON (default: python),
# OMP_NUM_THREADS (torchrun sets 1 per process unless given: on CPU set it to cores / N),
# MAX_RESTARTS (default 3): when a process dies, torchrun stops the others and starts the group
# again, up to this many times; the restarted processes resume from the newest checkpoint in the
# work directory by themselves (cvt_mm/engine/elastic.py). MAX_RESTARTS=0: the first death ends
# the run.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG NUM_PROCESSES_PER_NODE [train.py arguments ...]" >&2
  exit 2
fi
CONFIG="$1"
NUM_PROCESSES="$2"
shift 2
MAX_RESTARTS="${MAX_RESTARTS:-3}"
source "$(dirname "${BASH_SOURCE[0]}")/_dist_env.sh"

exec "$PYTHON" -m torch.distributed.run "${RENDEZVOUS[@]}" --nproc_per_node="$NUM_PROCESSES" \
  --max-restarts="$MAX_RESTARTS" "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "$@"
