#!/usr/bin/env bash
# Train with N processes on this machine, on GPUs or (gloo) on CPU.
#
#   bash tools/dist_train.sh CONFIG N [tools/train.py arguments ...]
#
# Environment: PYTHON (default: python), PORT (default: a free port), OMP_NUM_THREADS (torchrun
# sets 1 per process unless given: on CPU set it to cores / N).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG NUM_PROCESSES [train.py arguments ...]" >&2
  exit 2
fi
CONFIG="$1"
NUM_PROCESSES="$2"
shift 2
PYTHON="${PYTHON:-python}"
# Ask the OS for a free port, so that concurrent jobs do not collide on torchrun's default.
FREE_PORT='import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
PORT="${PORT:-$("$PYTHON" -c "$FREE_PORT")}"
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "$PYTHON" -m torch.distributed.run \
  --nnodes=1 --node_rank=0 --master_addr=127.0.0.1 --master_port="$PORT" \
  --nproc_per_node="$NUM_PROCESSES" \
  "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "$@"
