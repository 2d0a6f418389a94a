# Entry points for people and CI. `make test`, `make lint` and `make demo` set the environment
# up first; none of them changes anything outside the checkout and its caches.
# Not PYTHON: `CVT_MM_PYTHON=python3.12 make env` chooses the interpreter (tools/setup_env.sh).
VENV_PYTHON := .venv/bin/python

.PHONY: env slurm test lint demo clean-env

# Creates .venv/ (torch, mmcv-lite, mmdet, mmseg, mmpretrain, cvt_mm): nothing to compile.
# `make env MMCV_OPS=1` builds mmcv's compiled ops instead (cached); CVT_MM_PYTHON=python3.12
# chooses the interpreter (3.10-3.12). docs/install.md.
env:
	MMCV_OPS=$(MMCV_OPS) bash tools/setup_env.sh

# A one-node Slurm on this machine, for the tests marked `slurm` (tools/slurm_train.sh,
# tools/slurm_submit.sh, --launcher slurm), which `make test` skips where no Slurm answers; its
# partition `urgent` preempts the default `local`. Needs root: installs Debian's slurm-wlm if
# missing, writes /etc/slurm/slurm.conf, starts munged, slurmctld, slurmd.
slurm:
	bash tools/ci/start_local_slurm.sh

# The suite runs on the default environment; its parity tests compare the stand-in for mmcv's
# compiled ops with mmcv's own CPU kernels, built once and cached (docs/install.md).
test:
	MMCV_OPS=$(MMCV_OPS) bash tools/setup_env.sh --compiled-ops-reference
	$(VENV_PYTHON) -m pytest tests

# ruff, configured in pyproject.toml.
lint: env
	$(VENV_PYTHON) -m ruff check .

# The mission in small on toy data: pretrain a CvT classifier, train Mask R-CNN from it,
# evaluate with COCO metrics and draw predictions (see README).
demo: env
	$(VENV_PYTHON) tools/quickstart.py

clean-env:
	rm -rf .venv
