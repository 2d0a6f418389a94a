#!/usr/bin/env bash
# Create .venv/ in the repo root with the OpenMMLab stack that cvt_mm needs, from nothing.
# Every pin and patch below carries its reason; docs/install.md explains the traps in full.
# Re-running is cheap: finished steps are skipped and the mmcv wheel is reused from a cache
# outside the checkout ($CVT_MM_CACHE, default ~/.cache/cvt_mm).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3.11}"
CACHE_DIR="${CVT_MM_CACHE:-$HOME/.cache/cvt_mm}"
# torch/torchvision must be a pair that imports together; PyPI's torchvision beside a different
# torch fails with "operator torchvision::nms does not exist".
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
# mmdet 3.3.0 and mmseg 1.2.2 require mmcv<2.2.0; mmcv has no wheels on PyPI for recent torch.
MMCV_VERSION="2.1.0"
STAMP="$VENV/.cvt_mm_env_complete"
# The stamp names everything that decides the environment's contents: a change to the pins,
# to setup.py's requirements or to this script makes the next run install again.
STAMP_TEXT="torch=$TORCH_VERSION torchvision=$TORCHVISION_VERSION mmcv=$MMCV_VERSION $(cat "$REPO_ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"

log() { printf '[setup_env] %s\n' "$*"; }

if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_TEXT" ]]; then
  log "environment already complete at $VENV; refreshing the editable cvt_mm install only"
  "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e "$REPO_ROOT"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip)

# setuptools<81: mmcv's setup.py and mmengine at run time import pkg_resources, removed in 81.
"${PIP[@]}" install --quiet --upgrade pip wheel "setuptools<81"
log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install --quiet "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# ninja makes the mmcv build use both cores; numpy<2: mmcv 2.1 / mmdet 3.3 predate numpy 2.
"${PIP[@]}" install --quiet ninja "numpy<2" "mmengine==0.10.7"

PLATFORM_TAG="$("$PY" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_BUILD="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  OPS_FLAVOUR="cuda"
else
  OPS_FLAVOUR="cpu"
fi
WHEEL_DIR="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$TORCH_BUILD-$PY_TAG-$PLATFORM_TAG-$OPS_FLAVOUR"
mkdir -p "$WHEEL_DIR"

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  log "no cached mmcv wheel in $WHEEL_DIR: building mmcv $MMCV_VERSION with $OPS_FLAVOUR ops (9-20 min on 2 cores)"
  BUILD_DIR="$(mktemp -d)"
  trap 'rm -rf "$BUILD_DIR"' EXIT
  "${PIP[@]}" download --quiet --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD_DIR"
  tar -xzf "$BUILD_DIR"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD_DIR"
  SRC="$BUILD_DIR/mmcv-$MMCV_VERSION"
  # Recent torch headers use C++20 features; mmcv's setup.py hard-codes -std=c++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  if [[ "$OPS_FLAVOUR" == "cuda" ]]; then export FORCE_CUDA=1; fi
  # --no-build-isolation: the build must compile against the torch installed above.
  (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
     "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$BUILD_DIR/dist" . )
  cp "$BUILD_DIR"/dist/mmcv-*.whl "$WHEEL_DIR/"
fi
log "installing cached mmcv wheel from $WHEEL_DIR"
"${PIP[@]}" install --quiet --no-deps "$WHEEL_DIR"/mmcv-*.whl
# mmcv's runtime deps (the wheel was installed --no-deps so pip cannot swap torch underneath it).
"${PIP[@]}" install --quiet addict packaging Pillow pyyaml yapf "numpy<2"

log "installing cvt_mm and the OpenMMLab task libraries"
"${PIP[@]}" install --quiet --no-build-isolation -e "$REPO_ROOT[tests,tools,deploy,plot]"

# mmcv's own compiled ops first: after it, import cvt_mm would stand in for missing ones.
"$PY" -c "import mmcv._ext, cvt_mm, mmdet, mmseg, mmpretrain; import mmpretrain.models, mmdet.models, mmseg.models; print('environment OK')"
echo "$STAMP_TEXT" > "$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
