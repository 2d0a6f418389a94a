# Sourced by tools/dist_train.sh and tools/dist_test.sh: torchrun's rendezvous from the
# environment (NNODES, NODE_RANK, MASTER_ADDR, PORT; a free port on one machine) and PYTHON, as
# the array RENDEZVOUS, and TOOLS_DIR.
PYTHON="${PYTHON:-python}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
if [[ -z "${PORT:-}" ]]; then
  if [[ "$NNODES" -gt 1 ]]; then
    echo "$0: NNODES=$NNODES: set PORT to the same free port on every machine" >&2
    exit 2
  fi
  # One machine: ask the OS for a free port, so that concurrent jobs do not collide.
  PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
RENDEZVOUS=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
            --master_port="$PORT")
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
