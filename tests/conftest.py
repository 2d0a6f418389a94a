"""Fixtures for every test: one torch thread per xdist worker, a fixed seed per test, the
run's temporary files kept in pytest's own temporary directory; the gate of the tests marked
``slurm`` (tests/slurm_gate.py: skipped where no Slurm answers, failed instead under
CVT_MM_REQUIRE_SLURM=1; run one at a time)."""
import os
import tempfile

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


@pytest.fixture(scope='session', autouse=True)
def _temporary_files_in_the_runs_directory(tmp_path_factory):
    """TMPDIR for this process and every process it starts (torchrun, Slurm jobs, dataloader
    workers): a directory of the run's, which pytest removes with its old runs. Processes
    that a test kills leave their temporary directories behind (multiprocessing's pymp-*,
    torchrun's torchelastic_*), some 90 a run, which would otherwise pile up in /tmp."""
    run_tmp = tmp_path_factory.getbasetemp() / 'tmp'
    run_tmp.mkdir(exist_ok=True)
    previous = os.environ.get('TMPDIR')
    os.environ['TMPDIR'] = str(run_tmp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield
    if previous is None:
        os.environ.pop('TMPDIR')
    else:
        os.environ['TMPDIR'] = previous
    tempfile.tempdir = None
