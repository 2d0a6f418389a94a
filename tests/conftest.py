"""Shared fixtures: tiny CvT settings; `randomize_norms` makes random weights matter."""
import pytest
import torch

from cvt_mm.parity import randomize_norms  # noqa: F401  (re-exported for tests)

# Three stages, cls token in the last, the official kernels and strides: every code path of
# CvT-13 at a fraction of its cost. Depth i+1 in stage i also sidesteps an HF indexing bug
# (drop_path_rates[stage] over a list of `depth` entries) that breaks shallower stages.
TINY_ARCH = dict(embed_dims=[16, 32, 48], depths=[1, 2, 3], num_heads=[1, 2, 3])


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
