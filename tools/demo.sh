#!/usr/bin/env bash
# Set up the environment (idempotent; skipped with --no-venv), make the demo
# data set, train the tiny CDS Faster R-CNN on it, evaluate it with COCO
# metrics on the val images and draw its predictions on them, export the
# plain detector and evaluate that plain checkpoint with the plain config;
# end with a 5-line summary read from the run's logs. About 5 minutes on 2
# idle CPU cores after set-up.
#   bash tools/demo.sh [extra --cfg-options for training]
#   bash tools/demo.sh --no-venv [...]   # or CDS_VENV=none: no set-up, the
#                                        # current environment's python
# --no-venv is for a user who already has an OpenMMLab environment with
# mmdet, mmcv with its compiled ops and cds_mm (`pip install .`): the demo
# then runs with `python` on the PATH (or $CDS_DEMO_PYTHON), neither makes
# nor touches .venv, and writes data/ and work_dirs/ under the current
# folder. It is the only route for the copy an installed wheel carries
# (cds_mm/.mim/tools/demo.sh, which has no setup_env.sh beside it).
# Without it, the set-up below makes the pinned .venv (the fresh-machine
# route; the mmcv build takes about 9 minutes, once) and the demo runs in
# the repository root.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CDS_VENV:-$REPO/.venv}"
if [[ "${1:-}" == "--no-venv" ]]; then
  shift
  VENV=none
elif [[ ! -f "$REPO/tools/setup_env.sh" ]]; then
  echo "[demo] no tools/setup_env.sh here (an installed copy): --no-venv"
  VENV=none
fi
CONFIG="$REPO/configs/demo/faster-rcnn_r18-w16_fpn_cds_shapes.py"
PLAIN="$REPO/configs/demo/faster-rcnn_r18-w16_fpn_shapes_plain.py"
WORK_DIR="${CDS_DEMO_WORK_DIR:-work_dirs/demo_cds_shapes}"

if [[ "$VENV" == "none" ]]; then
  PY="${CDS_DEMO_PYTHON:-$(command -v python || command -v python3 || true)}"
  [[ -n "$PY" ]] || {
    echo "[demo] --no-venv: no python on the PATH" >&2
    exit 1
  }
  echo "[demo] == no set-up: using $PY, writing under $PWD"
  "$PY" -c "import cds_mm, mmdet, mmcv.ops, pycocotools" || {
    echo "[demo] --no-venv needs cds_mm, mmdet, pycocotools and mmcv with its" \
      "compiled ops (mmcv.ops) in $PY's environment; install them, or run" \
      "bash tools/demo.sh without --no-venv to make the pinned .venv" >&2
    exit 1
  }
else
  PY="$VENV/bin/python"
  bash "$REPO/tools/setup_env.sh"
  cd "$REPO"
fi
echo "[demo] == data: data/shapes (generated, deterministic)"
"$PY" "$REPO/tools/dataset_converters/make_shapes_coco.py" data/shapes \
  --num-train 1000 --num-val 100
echo "[demo] == train $CONFIG"
"$PY" "$REPO/tools/train.py" "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT="$(cat "$WORK_DIR/last_checkpoint")"
echo "[demo] == test $CKPT (COCO bbox mAP on val, pictures)"
"$PY" "$REPO/tools/test.py" "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" \
  --show-dir vis
echo "[demo] == export the plain detector (CDS heads stripped)"
"$PY" "$REPO/tools/export_plain.py" "$CONFIG" "$CKPT" \
  --out-dir "$WORK_DIR/export"
echo "[demo] == test the exported plain detector, plain config (same mAP)"
"$PY" "$REPO/tools/test.py" "$PLAIN" "$WORK_DIR/export/plain.pth" \
  --work-dir "$WORK_DIR/test_plain"
echo "[demo] done: checkpoints and logs in $WORK_DIR"
# the summary: numbers from this run's json logs, pictures from the first test
"$PY" - "$WORK_DIR" <<'EOF_SUMMARY'
import glob
import json
import os.path as osp
import sys

work = sys.argv[1]


def records(pattern):
    """Every json line of the newest log matching ``pattern``."""
    logs = sorted(glob.glob(osp.join(work, pattern)))
    if not logs:
        raise SystemExit(f'[demo] no log matches {osp.join(work, pattern)}')
    with open(logs[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def coco(name):
    """``(mAP@50, mAP)`` in % of the test run in ``work/name``; CocoMetric
    logs nothing when nothing was detected, which is an mAP of 0."""
    for rec in records(osp.join(name, '*', '[0-9]*.json')):
        if 'coco/bbox_mAP_50' in rec:
            return 100 * rec['coco/bbox_mAP_50'], 100 * rec['coco/bbox_mAP']
    return 0.0, 0.0


def cds_losses(rec):
    keys = sorted(k for k in rec if k.startswith('loss_cds'))
    parts = ', '.join(f"{k[5:]} {rec[k]:.3f}" for k in keys)
    total = sum(rec[k] for k in keys)
    return f"iter {rec['iter']:>4}: total {total:.3f} ({parts})"


train = [r for r in records(osp.join('*', 'vis_data', 'scalars.json'))
         if any(k.startswith('loss_cds') for k in r)]
if not train:
    raise SystemExit('[demo] no CDS loss in the training log')
# the start: the first record at full weight, past CDSWeightHook's warm-up
start = next((r for r in train if r.get('cds_weight_scale', 1) >= 1), train[0])
(ap50, ap), (plain50, plain) = coco('test'), coco('test_plain')
vis = sorted(glob.glob(osp.join(work, 'test', '*', 'vis')))
num = len(glob.glob(osp.join(vis[-1], '*'))) if vis else 0
print(f'[demo] val bbox mAP@50 {ap50:.1f} %, mAP@[.5:.95] {ap:.1f} % '
      f"(CDS Faster R-CNN, {train[-1]['iter']} training iterations)")
print(f'[demo] the exported plain detector: mAP@50 {plain50:.1f} %, '
      f'mAP@[.5:.95] {plain:.1f} %')
print(f'[demo] CDS losses (weighted) at the start, {cds_losses(start)}')
print(f'[demo] CDS losses (weighted) at the end,   {cds_losses(train[-1])}')
print(f"[demo] {num} pictures (ground truth left, prediction right): "
      f"{osp.relpath(vis[-1]) if vis else 'none written'}")
EOF_SUMMARY
