#!/usr/bin/env bash
# Train with GPUS processes on this machine (one per GPU; on a machine without CUDA, CPU
# processes that talk over gloo), through torchrun and tools/train.py --launcher pytorch.
#
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py arguments...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 bash tools/dist_train.sh CONFIG 8   # node 0 of 2
#
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON
# (python; e.g. PYTHON=.venv/bin/python).
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
TOOLS=$(dirname "$0")

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
${PYTHON:-python} -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
