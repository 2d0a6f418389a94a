"""Shared fixtures: tiny CvT settings; `randomize_norms` makes random weights matter."""
import os

import pytest
import torch

from cvt_mm.parity import randomize_norms  # noqa: F401  (re-exported for tests)

# Three stages, cls token in the last, the official kernels and strides: every code path of
# CvT-13 at a fraction of its cost. Depth i+1 in stage i also sidesteps an HF indexing bug
# (drop_path_rates[stage] over a list of `depth` entries) that breaks shallower stages.
if os.environ.get('PYTEST_XDIST_WORKER'):
    # One worker per core: a second intra-op thread per worker would only oversubscribe.
    torch.set_num_threads(1)

TINY_ARCH = dict(embed_dims=[16, 32, 48], depths=[1, 2, 3], num_heads=[1, 2, 3])


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
