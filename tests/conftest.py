"""Fixtures for every test: one torch thread per xdist worker, a fixed seed per test; the gate
of the tests marked ``slurm`` (tests/slurm_gate.py: skipped where no Slurm answers, failed
instead under CVT_MM_REQUIRE_SLURM=1; run one at a time)."""
import os

import pytest
import torch
from slurm_gate import *  # noqa: F401,F403  (its hooks and fixture, by its __all__)

if os.environ.get('PYTEST_XDIST_WORKER'):
    # One worker per core: a second intra-op thread per worker would only oversubscribe.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
