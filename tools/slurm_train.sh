#!/usr/bin/env bash
# Train on a Slurm cluster: srun starts one task per GPU and tools/train.py --launcher slurm
# reads its rank from Slurm's environment (GPUs needed: MMEngine's Slurm launcher sets a CUDA
# device).
#
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py arguments...]
#   GPUS=16 bash tools/slurm_train.sh dev kd_r18 \
#       configs/kd/kd_resnet18_from_resnet34_8xb32_in1k.py work_dirs/kd_r18
#
# Environment: GPUS (8 in all), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (more srun
# options), PYTHON (python).
set -ex
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
TOOLS=$(dirname "$0")

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
srun --partition="$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    ${PYTHON:-python} -u "$TOOLS/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "$@"
