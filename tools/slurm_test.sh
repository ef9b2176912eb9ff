#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster with srun, like mmdet's
# tools/slurm_test.sh:
#   bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [test.py args...]
# The environment sets the job's size: GPUS (all tasks, default 8),
# GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS (extra
# srun flags, split on spaces) and PYTHON (the interpreter, default python).
# One task per GPU; every task runs tools/test.py with --launcher slurm.

set -x

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
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
    "${PYTHON:-python}" -u "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" \
    --launcher="slurm" "${@:5}"
