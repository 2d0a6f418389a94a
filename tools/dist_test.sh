#!/usr/bin/env bash
# Evaluate a checkpoint with N processes per machine, on one or several machines, on GPUs or
# (gloo) on CPU: each process evaluates its share of the test set, and rank 0 prints the metrics
# of the whole set, as tools/test.py does with one process.
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT N [tools/test.py arguments, e.g. --tta ...]
#
# Several machines: run the same command on each, with the same MASTER_ADDR (the address of the
# machine with NODE_RANK=0) and PORT, e.g. on two machines:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_test.sh CONFIG CKPT 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_test.sh CONFIG CKPT 8
#
# Environment: NNODES (default 1), NODE_RANK (default 0), MASTER_ADDR (default 127.0.0.1), PORT
# (one machine: a free port by default; several: required), PYTHON (default: python),
# OMP_NUM_THREADS (torchrun sets 1 per process unless given: on CPU set it to cores / N).
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES_PER_NODE [test.py arguments ...]" >&2
  exit 2
fi
CONFIG="$1"
CHECKPOINT="$2"
NUM_PROCESSES="$3"
shift 3
source "$(dirname "${BASH_SOURCE[0]}")/_dist_env.sh"

exec "$PYTHON" -m torch.distributed.run "${RENDEZVOUS[@]}" --nproc_per_node="$NUM_PROCESSES" \
  "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
