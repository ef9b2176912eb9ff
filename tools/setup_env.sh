#!/usr/bin/env bash
# Set up cds_mm's isolated environment, idempotently.
#
#   bash tools/setup_env.sh            # create/refresh the venv
#   bash tools/setup_env.sh --dry-run  # print the plan and the cache paths, change nothing
#
# Environment:
#   CDS_VENV       venv folder (default: <repo>/.venv)
#   CDS_CACHE      wheel cache outside the repo (default: ~/.cache/cds_mm/wheels)
#   CDS_PYTHON     interpreter used to create the venv (default: python3.11, else python3)
#
# mmdet 3.3.0 accepts mmcv < 2.2 only, and mmcv 2.1.0 is on the registry as an sdist whose
# setup.py asks for C++17 while torch 2.14's headers need C++20. We build it once with the flag
# raised, compiled ops on, no build isolation, and cache the wheel.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CDS_VENV:-$REPO/.venv}"
CACHE="${CDS_CACHE:-$HOME/.cache/cds_mm/wheels}"
PY="${CDS_PYTHON:-$(command -v python3.11 || command -v python3)}"
MMCV_VERSION=2.1.0
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
STACK_PINS=(mmengine==0.10.7 mmdet==3.3.0 mmpretrain==1.2.0 pycocotools==2.0.11)
BUILD_PINS=('setuptools<70' wheel ninja psutil)
MMCV_WHEEL_GLOB="mmcv-${MMCV_VERSION}-cp*-linux_*.whl"
STAMP="$VENV/.cds_mm_setup_done"
# the stamp records the pins, so changing a pin re-runs the install
FINGERPRINT="$(printf '%s\n' "${TORCH_PINS[@]}" "${STACK_PINS[@]}" "mmcv==$MMCV_VERSION" \
  "$(cat "$REPO/requirements.txt" "$REPO"/requirements/*.txt "$REPO/setup.py" 2>/dev/null)" \
  | sha1sum | cut -c1-16)"
# the lowest mmdet / mmpretrain that requirements/mminstall.txt claims, cached for the install tests
LOWEST_PINS=(mmdet==3.2.0 mmpretrain==1.1.0)
EDITABLE_BUILD_PINS=('setuptools>=64,<70' wheel)

step() { printf '\n[setup_env] == %s\n' "$*"; }
CURRENT_STEP=start
trap 'echo "[setup_env] FAILED at step: $CURRENT_STEP (see the output above)" >&2' ERR

if [[ "${1:-}" == "--dry-run" ]]; then
  echo "venv:        $VENV"
  echo "wheel cache: $CACHE"
  echo "python:      $PY"
  echo "stamp:       $STAMP ($( [[ -f $STAMP && $(cat "$STAMP") == "$FINGERPRINT" ]] && echo up-to-date || echo missing-or-stale))"
  shopt -s nullglob; cached=("$CACHE"/$MMCV_WHEEL_GLOB)
  echo "mmcv wheel:  ${cached[0]:-not cached, would build (~9 min on 2 cores)}"
  exit 0
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FINGERPRINT" ]]; then
  echo "[setup_env] $VENV is up to date ($FINGERPRINT); nothing to do"
  exit 0
fi

CURRENT_STEP="create venv $VENV"; step "$CURRENT_STEP"
[[ -n "$PY" ]] || { echo "[setup_env] no python3 found; set CDS_PYTHON" >&2; exit 1; }
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

CURRENT_STEP="install ${TORCH_PINS[*]}"; step "$CURRENT_STEP"
"${PIP[@]}" install -q "${TORCH_PINS[@]}"
"${PIP[@]}" install -q mmengine==0.10.7
# after torch, which pulls a setuptools without pkg_resources (mmcv's setup.py needs it)
"${PIP[@]}" install -q "${BUILD_PINS[@]}"

shopt -s nullglob
wheels=("$CACHE"/$MMCV_WHEEL_GLOB)
if (( ${#wheels[@]} == 0 )); then
  CURRENT_STEP="build mmcv $MMCV_VERSION with ops (once per machine, ~9 min on 2 cores)"; step "$CURRENT_STEP"
  mkdir -p "$CACHE"
  work="$(mktemp -d)"
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  grep -q -- '-std=c++17' "$src/setup.py" || { echo "[setup_env] mmcv setup.py has no -std=c++17 flag to raise" >&2; exit 1; }
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  # -v shows the compiler lines as they go: the build is long and silent otherwise
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
     "${PIP[@]}" wheel -v --no-build-isolation --no-deps -w "$work/dist" . 2>&1 \
     | tee "$work/build.log" \
     | { grep --line-buffered -E '^\s*(building|gcc|g\+\+|c\+\+|\[[0-9]+/[0-9]+\])' | cut -c1-160 || true; }) \
    || { tail -40 "$work/build.log" >&2; false; }
  cp "$work"/dist/mmcv-*.whl "$CACHE"/
  rm -rf "$work"
  wheels=("$CACHE"/$MMCV_WHEEL_GLOB)
fi

CURRENT_STEP="install mmcv from ${wheels[0]}"; step "$CURRENT_STEP"
"${PIP[@]}" install -q --no-deps "${wheels[0]}"
"${PIP[@]}" install -q addict yapf opencv-python-headless packaging pyyaml

CURRENT_STEP="install ${STACK_PINS[*]} and cds_mm"; step "$CURRENT_STEP"
"${PIP[@]}" install -q "${STACK_PINS[@]}" -r "$REPO/requirements.txt"
"${PIP[@]}" install -q --no-deps -e "$REPO"
"${PIP[@]}" download -q --no-deps -d "$CACHE/lowest" "${LOWEST_PINS[@]}"
# a PEP 660 setuptools for the offline editable-install test (openmim's
# openxlab pins setuptools 60.2, which cannot build editable wheels)
"${PIP[@]}" download -q -d "$CACHE/build" "${EDITABLE_BUILD_PINS[@]}"

CURRENT_STEP="check mmcv ops and imports"; step "$CURRENT_STEP"
"$VENV/bin/python" - <<'PY'
import torch, mmcv, mmdet, mmpretrain, mmengine
from mmcv.ops import nms, RoIAlign
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0], keep
print(f'torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), mmengine {mmengine.__version__}, '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}')
PY
echo "$FINGERPRINT" > "$STAMP"
echo "[setup_env] done: $VENV"
