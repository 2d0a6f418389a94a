#!/usr/bin/env bash
# Wheels for a machine without internet that has PyTorch (and timm, transformers, onnxruntime)
# but none of the OpenMMLab packages, e.g. a GPU box: cvt_mm itself, mmcv 2.1.0 built without
# its compiled ops (PyPI's mmcv-lite: a pure-Python wheel that fits any torch), and every other
# package cvt_mm needs besides torch/torchvision, as binaries for that machine's Python.
#
#   bash tools/build_offline_wheels.sh [OUT_DIR] [PYTHON_VERSION]   # default: wheelhouse 3.12
#   WHEELS=minimal bash tools/build_offline_wheels.sh ...
#
# WHEELS=full (default) resolves every dependency (about 170 MB, opencv-python and scipy the
# largest). WHEELS=minimal takes the OpenMMLab packages, transformers 4.48.3 (with the
# tokenizers and huggingface_hub it accepts), numpy<2 and the small pure-Python packages they
# import, without their dependencies: for a target that already has opencv-python,
# matplotlib, Pillow, rich and the like (about 42 MB, under a 64 MiB transfer limit); it is
# installed there with `pip install --no-index --no-deps wheelhouse/*.whl` and checked by
# `python -c "import cvt_mm, mmpretrain.models, mmdet.models, mmseg.models"`.
#
# Then, on the other machine, from a checkout with the wheelhouse in it (docs/install.md, "A
# machine without internet"):
#   pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
#   pip install --no-index --no-deps wheelhouse/cvt_mm-*.whl   # optional: the checkout imports
#   python tools/benchmark.py --device cuda
#
# Without mmcv's compiled ops, `import cvt_mm` serves those the configs call
# (cvt_mm/mmcv_ext_fallback.py, docs/install.md).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$REPO_ROOT/wheelhouse}" && cd "${1:-$REPO_ROOT/wheelhouse}" && pwd)"
TARGET_PYTHON="${2:-3.12}"
PY="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
MMCV_VERSION="2.1.0"
# The versions tools/setup_env.sh installs and CI tests; transformers 4.48.3 because
# `import mmpretrain.models` breaks with >= 4.49, and with it the tokenizers and
# huggingface_hub it accepts.
REQUIREMENTS=("mmcv-lite==$MMCV_VERSION" "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2"
              "mmpretrain==1.2.0" "transformers==4.48.3" "numpy<2" "setuptools<81"
              model-index pycocotools safetensors ftfy regex)
# The minimal set: what the full set holds minus opencv-python, scipy, matplotlib, Pillow and
# their dependencies. pycocotools, shapely and terminaltables stay (`import mmdet.models` needs
# them, a PyTorch image seldom has them), wcwidth (ftfy's, for `import mmseg.models`),
# prettytable (mmseg's metrics) and importlib-metadata (`import mmpretrain`; < 10, which would
# bring lazy-importer).
MINIMAL=("mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0"
         "transformers==4.48.3" "tokenizers>=0.21,<0.22" "huggingface_hub>=0.24,<1.0"
         "numpy<2" addict yapf termcolor platformdirs einops mat4py model-index ordered-set
         modelindex ftfy wcwidth regex safetensors pycocotools shapely terminaltables
         prettytable "importlib-metadata<10")
PLATFORMS=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux_2_28_x86_64 --platform linux_x86_64)

log() { printf '[build_offline_wheels] %s\n' "$*"; }

log "cvt_mm (no dependencies: torch and torchvision are the target's own)"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" "$REPO_ROOT"

log "mmcv-lite $MMCV_VERSION (mmcv without its compiled ops: a pure-Python wheel, any torch)"
"$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$OUT" "mmcv-lite==$MMCV_VERSION"

if [[ "${WHEELS:-full}" == minimal ]]; then
  log "the minimal set as binaries for Python $TARGET_PYTHON, without their dependencies"
  "$PY" -m pip download --quiet --no-deps --only-binary :all: --python-version \
    "$TARGET_PYTHON" --implementation cp "${PLATFORMS[@]}" -d "$OUT" "${MINIMAL[@]}"
  REQUIREMENTS=("mmcv-lite==$MMCV_VERSION" "${MINIMAL[@]}")
else
  log "the other requirements as binaries for Python $TARGET_PYTHON (their dependencies too)"
  # --find-links: the mmcv-lite wheel downloaded above is one of them.
  "$PY" -m pip download --quiet --only-binary :all: --python-version "$TARGET_PYTHON" \
    --implementation cp "${PLATFORMS[@]}" --find-links "$OUT" -d "$OUT" "${REQUIREMENTS[@]}"
fi

log "checking that every wheel installs on Python $TARGET_PYTHON"
CHECK_DIR="$(mktemp -d)"
"$PY" -m pip install --quiet --dry-run --no-index --no-deps --only-binary :all: \
  --python-version "$TARGET_PYTHON" --implementation cp "${PLATFORMS[@]}" \
  --target "$CHECK_DIR" "$OUT"/*.whl
rm -rf "$CHECK_DIR"
printf '%s\n' "${REQUIREMENTS[@]}" > "$OUT/requirements.txt"
log "$(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
