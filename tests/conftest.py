"""Fixtures for every test: one torch thread per xdist worker, a fixed seed per test."""
import os

import pytest
import torch

if os.environ.get('PYTEST_XDIST_WORKER'):
    # One worker per core: a second intra-op thread per worker would only oversubscribe.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
