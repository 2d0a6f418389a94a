#!/usr/bin/env bash
# Create .venv/ in the repo root with the OpenMMLab stack that cvt_mm needs, from nothing.
# Every pin and choice below carries its reason; docs/install.md is the reference.
#
#   bash tools/setup_env.sh                      # mmcv-lite: nothing to compile (the default)
#   MMCV_OPS=1 bash tools/setup_env.sh           # mmcv with its compiled ops (CPU, or CUDA where
#                                                # torch sees a GPU), built here and cached; kept
#                                                # by later runs until MMCV_OPS=0
#   bash tools/setup_env.sh --compiled-ops-reference
#       the default environment, plus mmcv's compiled CPU ops unpacked beside it
#       (.venv/mmcv_compiled_ops/) for the parity tests of the stand-in (`make test`)
#
# Variables: CVT_MM_PYTHON (the interpreter, 3.10-3.12; default python3.11), CVT_MM_VENV
# (default .venv), TORCH_VERSION / TORCHVISION_VERSION, TORCH_INDEX_URL (another torch build,
# e.g. one for an older CUDA), CVT_MM_CACHE (default ~/.cache/cvt_mm), MAX_JOBS.
# Re-running is cheap: a complete environment is recognised by its stamp, and compiled mmcv
# wheels are reused from $CVT_MM_CACHE.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CVT_MM_VENV:-$REPO_ROOT/.venv}"
CACHE_DIR="${CVT_MM_CACHE:-$HOME/.cache/cvt_mm}"
# torch/torchvision must be a pair that imports together; PyPI's torchvision beside a different
# torch fails with "operator torchvision::nms does not exist".
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
# mmdet 3.3.0 and mmseg 1.2.2 require mmcv<2.2.0. PyPI has mmcv 2.1.0 only as an sdist (its
# compiled ops must be built against the torch installed), and as mmcv-lite, a pure-Python wheel.
MMCV_VERSION="2.1.0"
SUPPORTED_PYTHONS="3.10 3.11 3.12"

log() { printf '[setup_env] %s\n' "$*"; }
die() { printf '[setup_env] error: %s\n' "$*" >&2; exit 1; }

REFERENCE_OPS=0
for arg in "$@"; do
  case "$arg" in
    --compiled-ops-reference) REFERENCE_OPS=1 ;;
    *) die "unknown argument '$arg' (tools/setup_env.sh [--compiled-ops-reference])" ;;
  esac
done
STAMP="$VENV/.cvt_mm_env_complete"
# MMCV_OPS unset keeps the route of an existing environment: `make env MMCV_OPS=1`, then
# `make test` or `make demo`, stays on compiled ops.
if [[ -z "${MMCV_OPS:-}" ]]; then
  MMCV_OPS=0
  if [[ -f "$STAMP" ]] && grep -q 'route=mmcv-compiled' "$STAMP"; then
    MMCV_OPS=1
    log "MMCV_OPS unset: keeping the compiled mmcv ops of $VENV (MMCV_OPS=0 goes back to mmcv-lite)"
  fi
fi
[[ "$MMCV_OPS" == 0 || "$MMCV_OPS" == 1 ]] || die "MMCV_OPS=$MMCV_OPS: use 0 (mmcv-lite) or 1 (compiled ops)"

python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

# The interpreter: CVT_MM_PYTHON, or the one of an existing venv, or python3.11.
if [[ -n "${CVT_MM_PYTHON:-}" ]]; then
  WANTED_VERSION="$(python_version "$CVT_MM_PYTHON")" ||
    die "CVT_MM_PYTHON=$CVT_MM_PYTHON does not run a Python interpreter (give a command on PATH or a path)"
  [[ " $SUPPORTED_PYTHONS " == *" $WANTED_VERSION "* ]] ||
    die "CVT_MM_PYTHON=$CVT_MM_PYTHON is Python $WANTED_VERSION; supported: ${SUPPORTED_PYTHONS// /, }"
  if [[ -x "$VENV/bin/python" && "$(python_version "$VENV/bin/python")" != "$WANTED_VERSION" ]]; then
    log "recreating $VENV: it has Python $(python_version "$VENV/bin/python"), CVT_MM_PYTHON asks for $WANTED_VERSION"
    rm -rf "$VENV"
  fi
  PYTHON_CMD="$CVT_MM_PYTHON"
else
  PYTHON_CMD=python3.11
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip)

# The wheel of mmcv with its compiled ops for this torch, Python and platform, built once per
# cache key and reused: $1 is the flavour (cpu, or cuda<version>-sm<archs>). Prints its path.
compiled_mmcv_wheel() {
  local flavour="$1" platform py_tag torch_build wheel_dir build_dir src
  platform="$("$PY" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')"
  py_tag="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  torch_build="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
  wheel_dir="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$torch_build-$py_tag-$platform-$flavour"
  mkdir -p "$wheel_dir"
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "no cached mmcv wheel in $wheel_dir: compiling mmcv $MMCV_VERSION's $flavour ops (10-50 min on 2 cores)" >&2
    # ninja spreads the build over the cores.
    "${PIP[@]}" install --quiet ninja
    build_dir="$(mktemp -d)"
    # --no-build-isolation for the download too: pip runs mmcv's setup.py for its metadata,
    # and that imports pkg_resources (setuptools < 81).
    "${PIP[@]}" download --quiet --no-deps --no-build-isolation --no-binary :all: \
      "mmcv==$MMCV_VERSION" -d "$build_dir" >&2
    tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
    src="$build_dir/mmcv-$MMCV_VERSION"
    # Recent torch headers use C++20 features; mmcv's setup.py hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    # mmcv's setup.py adds the CUDA ops wherever torch sees a GPU: a cpu wheel hides them.
    local hide_gpus=()
    [[ "$flavour" == cpu ]] && hide_gpus=(env CUDA_VISIBLE_DEVICES=)
    # --no-build-isolation: the build must compile against the torch installed above.
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
       "${hide_gpus[@]}" "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$build_dir/dist" . >&2)
    cp "$build_dir"/dist/mmcv-*.whl "$wheel_dir/"
    rm -rf "$build_dir"
  fi
  ls "$wheel_dir"/mmcv-*.whl | head -n 1
}

# mmcv's own compiled CPU kernels, unpacked beside the venv for the parity tests of the
# stand-in (tests/mmcv_reference.py loads them; nothing imports them as mmcv._ext).
unpack_reference_ops() {
  local reference_dir="$VENV/mmcv_compiled_ops" wheel
  wheel="$(compiled_mmcv_wheel cpu)"
  [[ -f "$reference_dir/$(basename "$wheel").unpacked" ]] && return 0
  log "unpacking mmcv's compiled CPU ops from $wheel into $reference_dir"
  rm -rf "$reference_dir" && mkdir -p "$reference_dir"
  "$PY" - "$wheel" "$reference_dir" <<'PYTHON'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    names = [n for n in archive.namelist() if n.startswith('mmcv/_ext') and n.endswith('.so')]
    assert len(names) == 1, f'{wheel}: expected one mmcv/_ext*.so, found {names}'
    (out / Path(names[0]).name).write_bytes(archive.read(names[0]))
PYTHON
  touch "$reference_dir/$(basename "$wheel").unpacked"
}

ROUTE="mmcv-lite"
[[ "$MMCV_OPS" == 1 ]] && ROUTE="mmcv-compiled"
# The stamp names everything that decides the environment's contents: a change to the pins, the
# route, setup.py's requirements or this script makes the next run install again.
stamp_text() {
  echo "python=$(python_version "$VENV/bin/python") torch=$TORCH_VERSION torchvision=$TORCHVISION_VERSION" \
       "index=${TORCH_INDEX_URL:-pypi} mmcv=$MMCV_VERSION route=$ROUTE" \
       "$(cat "$REPO_ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_text)" ]]; then
  log "environment already complete at $VENV ($ROUTE); refreshing the editable cvt_mm install only"
  "${PIP[@]}" install --quiet --no-deps --no-build-isolation -e "$REPO_ROOT"
  [[ "$REFERENCE_OPS" == 1 ]] && unpack_reference_ops
  exit 0
fi
rm -f "$STAMP"

if [[ ! -x "$VENV/bin/python" ]]; then
  python_version "$PYTHON_CMD" >/dev/null || die "$PYTHON_CMD does not run; choose an interpreter with CVT_MM_PYTHON (${SUPPORTED_PYTHONS// /, })"
  log "creating $VENV with $PYTHON_CMD (Python $(python_version "$PYTHON_CMD"))"
  "$PYTHON_CMD" -m venv "$VENV"
fi

# setuptools<81: mmcv's setup.py and mmengine at run time import pkg_resources, removed in 81.
"${PIP[@]}" install --quiet --upgrade pip wheel "setuptools<81"
TORCH_INDEX=()
[[ -n "${TORCH_INDEX_URL:-}" ]] && TORCH_INDEX=(--index-url "$TORCH_INDEX_URL")
log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
"${PIP[@]}" install --quiet "${TORCH_INDEX[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# numpy<2: mmcv 2.1 / mmdet 3.3 predate numpy 2.
"${PIP[@]}" install --quiet "numpy<2" "mmengine==0.10.7"

# Both distributions install the package `mmcv`: one of them at a time.
if [[ "$MMCV_OPS" == 1 ]]; then
  # Before a long build: what it needs, or one line naming what is missing.
  read -r FLAVOUR ARCH_LIST < <("$PY" "$REPO_ROOT/tools/mmcv_ops_preflight.py") || exit 1
  if [[ "$FLAVOUR" == cuda* ]]; then
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH_LIST"
  fi
  WHEEL="$(compiled_mmcv_wheel "$FLAVOUR")"
  log "installing mmcv with compiled $FLAVOUR ops from $WHEEL"
  "${PIP[@]}" uninstall --quiet -y mmcv-lite 2>/dev/null || true
  "${PIP[@]}" install --quiet --no-deps --force-reinstall "$WHEEL"
  # mmcv's runtime deps (installed --no-deps so pip cannot swap torch underneath it).
  "${PIP[@]}" install --quiet addict packaging Pillow pyyaml yapf opencv-python "numpy<2"
else
  log "installing mmcv-lite $MMCV_VERSION (pure Python: cvt_mm serves its compiled ops, docs/install.md)"
  "${PIP[@]}" uninstall --quiet -y mmcv 2>/dev/null || true
  "${PIP[@]}" install --quiet "mmcv-lite==$MMCV_VERSION" "numpy<2"
fi

[[ "$REFERENCE_OPS" == 1 ]] && unpack_reference_ops

log "installing cvt_mm and the OpenMMLab task libraries"
"${PIP[@]}" install --quiet --no-build-isolation -e "$REPO_ROOT[tests,tools,deploy,plot]"

"$PY" -c "import cvt_mm, mmdet, mmseg, mmpretrain; import mmpretrain.models, mmdet.models, mmseg.models
from cvt_mm import mmcv_ext_fallback
print('environment OK:', 'mmcv-lite, RoIAlign and NMS from torchvision' if mmcv_ext_fallback.installed() else 'mmcv compiled ops')"
stamp_text > "$STAMP"
log "done: activate with 'source ${VENV#"$REPO_ROOT"/}/bin/activate'"
