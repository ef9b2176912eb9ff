#!/usr/bin/env bash
# Train on a Slurm cluster with srun, like mmdet's tools/slurm_train.sh:
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR \
#       [train.py args...]
# e.g. GPUS=16 bash tools/slurm_train.sh gpu r50-cds CONFIG work_dirs/r50_cds \
#          --cfg-options data_root=/data/imagenet
# The environment sets the job's size: GPUS (all tasks, default 8),
# GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS (extra
# srun flags, split on spaces) and PYTHON (the interpreter, default python).
# One task per GPU; every task runs tools/train.py with --launcher slurm.

set -x

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

# SRUN_ARGS is left unquoted on purpose: it holds several srun flags
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "${PYTHON:-python}" -u "$(dirname "$0")/train.py" "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher="slurm" "${@:5}"
