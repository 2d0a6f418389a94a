"""The gate of the tests marked ``slurm`` (a pytest plugin; tests/conftest.py installs its hooks).

A ``slurm`` test runs where a Slurm answers (``sinfo`` lists a node that is idle, mixed or
allocated, and the partitions the marker names) and is skipped elsewhere, with the reason and
the command that starts a local one-node Slurm. With ``CVT_MM_REQUIRE_SLURM=1`` (CI) the same
test fails instead. The ``slurm`` tests of one run go one at a time across its xdist workers:
each asks for the local node's every CPU, so a second one would wait in the queue, out of its
own time limit. Without torch, so that tests/test_tools/test_local_slurm.py's child pytest runs
start fast.
"""
import fcntl
import functools
import os
import shutil
import subprocess
from typing import Optional

import pytest

# What tests/conftest.py installs.
__all__ = ['pytest_runtest_setup', 'pytest_runtest_call', '_slurm_tests_one_at_a_time']

SLURM_NODE_STATES_UP = {'idle', 'mixed', 'allocated'}
ENABLE_SLURM = 'make slurm'


@functools.lru_cache(maxsize=None)
def slurm_missing_reason() -> Optional[str]:
    """Why no Slurm answers here, or None when one does."""
    sinfo = shutil.which('sinfo')
    if sinfo is None:
        return 'no sinfo on PATH'
    try:
        result = subprocess.run([sinfo, '-h', '-o', '%T'], capture_output=True, text=True,
                                timeout=30)
    except subprocess.TimeoutExpired:
        return 'sinfo did not answer within 30 s'
    if result.returncode != 0:
        errors = result.stderr.strip().splitlines()
        return f'sinfo failed: {errors[-1] if errors else f"exit status {result.returncode}"}'
    states = set(result.stdout.split())
    if not states & SLURM_NODE_STATES_UP:
        return f'sinfo lists no node up (states: {", ".join(sorted(states)) or "none"})'
    return None


@functools.lru_cache(maxsize=None)
def slurm_partitions() -> frozenset:
    result = subprocess.run(['sinfo', '-h', '-o', '%R'], capture_output=True, text=True,
                            timeout=30)
    return frozenset(result.stdout.split())


def slurm_gate_message(item) -> Optional[str]:
    """Why a test marked ``slurm`` cannot run here, or None (unmarked, or a Slurm answers with
    the partitions the marker names: ``@pytest.mark.slurm(partitions=['urgent'])``)."""
    marker = item.get_closest_marker('slurm')
    if marker is None:
        return None
    reason = slurm_missing_reason()
    if reason is not None:
        return f'needs a running Slurm: {reason}; `{ENABLE_SLURM}` starts a local one'
    missing = sorted(set(marker.kwargs.get('partitions', ())) - slurm_partitions())
    if missing:
        return (f'needs the Slurm partition(s) {", ".join(missing)}, which sinfo does not list; '
                f'`{ENABLE_SLURM}` starts the local Slurm with them')
    return None


def slurm_required() -> bool:
    return os.environ.get('CVT_MM_REQUIRE_SLURM') == '1'


def pytest_runtest_setup(item):
    message = slurm_gate_message(item)
    if message is not None and not slurm_required():
        pytest.skip(message)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    # Failed in the call (not the setup), so that it counts as a failed test, not an error.
    message = slurm_gate_message(item)
    if message is not None and slurm_required():
        pytest.fail(f'{message} (CVT_MM_REQUIRE_SLURM=1)', pytrace=False)


@pytest.fixture(autouse=True)
def _slurm_tests_one_at_a_time(request, tmp_path_factory):
    if request.node.get_closest_marker('slurm') is None:
        yield
        return
    # The run's temporary root, which its xdist workers' directories lie in. A worker is told by
    # its config (as xdist.is_xdist_worker does), not by PYTEST_XDIST_WORKER, which a pytest run
    # started from a worker's test inherits.
    root = tmp_path_factory.getbasetemp()
    if hasattr(request.config, 'workerinput'):
        root = root.parent
    lock_path = root / 'slurm_tests.lock'
    with open(lock_path, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def slurm_queue() -> str:
    """squeue's and sinfo's view of the cluster, for the message of a test that timed out
    waiting on a job."""
    shown = []
    for command in (['squeue', '-a', '-o', '%i %j %u %T %M %R'], ['sinfo', '-R']):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            shown.append(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
        except (OSError, subprocess.TimeoutExpired) as error:
            shown.append(f"$ {' '.join(command)}: {error}")
    return '\n'.join(shown)
