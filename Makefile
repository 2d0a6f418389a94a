# Entry points for people and CI. `make test`, `make lint` and `make demo` set the environment
# up first; none of them changes anything outside the checkout and its caches.
PYTHON := .venv/bin/python

.PHONY: env slurm test lint demo clean-env

# Creates .venv/ (torch, mmcv built with CPU ops and cached, mmdet, mmseg, mmpretrain, cvt_mm).
env:
	bash tools/setup_env.sh

# A one-node Slurm on this machine, for the tests marked `slurm` (tools/slurm_train.sh,
# tools/slurm_submit.sh, --launcher slurm), which `make test` skips where no Slurm answers; its
# partition `urgent` preempts the default `local`. Needs root: installs Debian's slurm-wlm if
# missing, writes /etc/slurm/slurm.conf, starts munged, slurmctld, slurmd.
slurm:
	bash tools/ci/start_local_slurm.sh

test: env
	$(PYTHON) -m pytest tests

# ruff, configured in pyproject.toml.
lint: env
	$(PYTHON) -m ruff check .

# The mission in small on toy data: pretrain a CvT classifier, train Mask R-CNN from it,
# evaluate with COCO metrics and draw predictions (see README).
demo: env
	$(PYTHON) tools/quickstart.py

clean-env:
	rm -rf .venv
