#!/usr/bin/env bash
# Set up the environment (idempotent), make the demo data set, train the tiny
# CDS Faster R-CNN on it, evaluate it with COCO metrics, and export the plain
# detector, then evaluate that plain checkpoint with the plain config.
# About 6 minutes on 2 idle CPU cores after set-up.
#   bash tools/demo.sh [extra --cfg-options for training]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CDS_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
CONFIG=configs/demo/faster-rcnn_r18-w16_fpn_cds_shapes.py
WORK_DIR="${CDS_DEMO_WORK_DIR:-work_dirs/demo_cds_shapes}"

bash "$REPO/tools/setup_env.sh"
cd "$REPO"
echo "[demo] == data: data/shapes (generated, deterministic)"
"$PY" tools/dataset_converters/make_shapes_coco.py data/shapes --num-train 400 --num-val 100
echo "[demo] == train $CONFIG"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT="$(cat "$WORK_DIR/last_checkpoint")"
echo "[demo] == test $CKPT (COCO bbox mAP on the val split)"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test"
echo "[demo] == export the plain detector (CDS heads stripped)"
"$PY" tools/export_plain.py "$CONFIG" "$CKPT" --out-dir "$WORK_DIR/export"
echo "[demo] == test the exported plain detector with the plain config (same mAP)"
"$PY" tools/test.py configs/demo/faster-rcnn_r18-w16_fpn_shapes_plain.py \
  "$WORK_DIR/export/plain.pth" --work-dir "$WORK_DIR/test_plain"
echo "[demo] done: checkpoints and logs in $WORK_DIR"
