"""Where the Slurm tests run: tests/slurm_gate.py (installed by tests/conftest.py) skips the
tests marked ``slurm`` where no Slurm answers (saying why and that `make slurm` starts one),
fails them under CVT_MM_REQUIRE_SLURM=1 (CI), runs them where one answers with the partitions a
test names; tools/ci/start_local_slurm.sh leaves a Slurm config that it did not write alone, and
one of its current version running, and asks for root to restart a cluster of an older one. Each
gate case runs pytest on a small test file in a child process, with a PATH chosen for it."""
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, TOOLS_DIR

START_LOCAL_SLURM = TOOLS_DIR / 'ci' / 'start_local_slurm.sh'

SLURM_TEST = '''
import pytest


@pytest.mark.slurm
def test_needs_slurm():
    pass
'''


def run_slurm_test(tmp_path, path, require=False, source=SLURM_TEST):
    test_file = tmp_path / 'test_needs_slurm.py'
    test_file.write_text(source)
    env = {key: value for key, value in os.environ.items() if key != 'CVT_MM_REQUIRE_SLURM'}
    env.update(PATH=path, PYTHONPATH=str(REPO_ROOT / 'tests'))
    if require:
        env['CVT_MM_REQUIRE_SLURM'] = '1'
    # The repository's pytest.ini (its markers) without its addopts; the gate as a plugin,
    # since the file lies outside tests/.
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', str(test_file), '-c', str(REPO_ROOT / 'pytest.ini'),
         '-o', 'addopts=', '-p', 'slurm_gate', '-p', 'no:cacheprovider', '-p', 'no:xdist', '-rsf',
         '-W', 'error::pytest.PytestUnknownMarkWarning'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def fake_sinfo(tmp_path, states: str, partitions: str = 'local\\n') -> str:
    """A bin directory whose sinfo prints the node ``states`` as sinfo does with -h -o %T, and
    the ``partitions`` with -h -o %R."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    sinfo = bin_dir / 'sinfo'
    sinfo.write_text(f'#!/bin/sh\ncase "$*" in\n  *%R*) printf "{partitions}" ;;\n'
                     f'  *) printf "{states}" ;;\nesac\n')
    sinfo.chmod(0o755)
    return str(bin_dir)


def test_slurm_test_is_skipped_with_reason_and_command_without_sinfo(tmp_path):
    (tmp_path / 'empty').mkdir()
    returncode, output = run_slurm_test(tmp_path, str(tmp_path / 'empty'))
    assert returncode == 0, output
    assert '1 skipped' in output
    assert 'needs a running Slurm: no sinfo on PATH; `make slurm` starts a local one' in output


def test_slurm_test_is_skipped_when_no_node_is_up(tmp_path):
    returncode, output = run_slurm_test(tmp_path, fake_sinfo(tmp_path, 'down\\ndrained\\n'))
    assert returncode == 0, output
    assert '1 skipped' in output
    assert 'sinfo lists no node up (states: down, drained)' in output


def test_slurm_test_fails_when_slurm_is_required(tmp_path):
    (tmp_path / 'empty').mkdir()
    returncode, output = run_slurm_test(tmp_path, str(tmp_path / 'empty'), require=True)
    assert returncode == 1, output
    assert '1 failed' in output
    assert 'needs a running Slurm: no sinfo on PATH' in output
    assert 'CVT_MM_REQUIRE_SLURM=1' in output


def test_slurm_test_is_skipped_where_slurm_lacks_a_partition_it_names(tmp_path):
    source = SLURM_TEST.replace('@pytest.mark.slurm', "@pytest.mark.slurm(partitions=['urgent'])")
    path = os.pathsep.join([fake_sinfo(tmp_path, 'idle\\n', partitions='local\\n'),
                            os.environ['PATH']])
    returncode, output = run_slurm_test(tmp_path, path, source=source)
    assert returncode == 0, output
    assert '1 skipped' in output
    assert ('needs the Slurm partition(s) urgent, which sinfo does not list; `make slurm` starts '
            'the local Slurm with them') in output
    returncode, output = run_slurm_test(tmp_path, path, source=source, require=True)
    assert returncode == 1 and '1 failed' in output, output


@pytest.mark.slurm
def test_slurm_test_runs_where_slurm_answers(tmp_path):
    returncode, output = run_slurm_test(tmp_path, os.environ['PATH'], require=True)
    assert returncode == 0, output
    assert '1 passed' in output


# Each test probes the gate's lock file with a second, non-blocking flock: taken by the gate
# while a slurm test runs (on whichever xdist worker), free again around an unmarked test.
LOCK_PROBING_TESTS = '''
import fcntl
import os

import pytest


def lock_is_free():
    with open(os.environ['SLURM_TESTS_LOCK'], 'a') as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True


@pytest.mark.slurm
@pytest.mark.parametrize('name', ['first', 'second'])
def test_slurm_test_holds_the_lock(name):
    assert not lock_is_free()


def test_unmarked_test_after_it_finds_the_lock_free():
    assert lock_is_free()
'''


@pytest.mark.parametrize('args, passed', [
    (['-p', 'no:xdist'], 3),
    # The slurm tests alone: the other worker's may hold the lock during an unmarked test.
    (['-n', '2', '--dist', 'load', '-k', 'holds_the_lock'], 2),
], ids=['one-process', 'two-xdist-workers'])
def test_slurm_tests_hold_one_lock_file_for_the_whole_run(tmp_path, args, passed):
    """The lock lies in the run's temporary root (``--basetemp``, which the xdist workers'
    directories lie in), held exactly while a slurm test runs."""
    (tmp_path / 'test_lock.py').write_text(LOCK_PROBING_TESTS)
    basetemp = tmp_path / 'basetemp'
    env = dict(os.environ, PATH=os.pathsep.join([fake_sinfo(tmp_path, 'idle\\n'),
                                                 os.environ['PATH']]),
               PYTHONPATH=str(REPO_ROOT / 'tests'),
               SLURM_TESTS_LOCK=str(basetemp / 'slurm_tests.lock'))
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', 'test_lock.py', '-c', str(REPO_ROOT / 'pytest.ini'),
         '-o', 'addopts=', '-p', 'slurm_gate', '-p', 'no:cacheprovider',
         '--basetemp', str(basetemp), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'{passed} passed' in result.stdout, result.stdout


def test_start_local_slurm_leaves_a_foreign_config_alone(tmp_path):
    """A config of another cluster (its daemons merely down) is neither overwritten nor
    followed by an install or a daemon start: the script stops before either."""
    config = tmp_path / 'slurm.conf'
    config.write_text('ClusterName=someone-elses\n')
    result = subprocess.run(['bash', str(START_LOCAL_SLURM)],
                            env=dict(os.environ, SLURM_CONF=str(config)), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f'{config} exists and was not written by this script' in result.stderr
    assert config.read_text() == 'ClusterName=someone-elses\n'


def run_start_local_slurm(tmp_path, config, sinfo_states: str):
    """tools/ci/start_local_slurm.sh on ``config``, where a fake sinfo reports nodes in
    ``sinfo_states`` and a fake ``id`` says the user is not root: whatever the script decides,
    it can neither stop nor start the real daemons."""
    bin_dir = fake_sinfo(tmp_path, sinfo_states)
    fake_id = tmp_path / 'bin' / 'id'
    fake_id.write_text('#!/bin/sh\necho 1000\n')
    fake_id.chmod(0o755)
    return subprocess.run(['bash', str(START_LOCAL_SLURM)],
                          env=dict(os.environ, SLURM_CONF=str(config),
                                   PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'),
                          capture_output=True, text=True, timeout=120)


def current_config() -> str:
    result = subprocess.run(['bash', str(START_LOCAL_SLURM), '--print-config'],
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def test_start_local_slurm_leaves_a_cluster_of_its_current_config_running(tmp_path):
    current = current_config()
    config = tmp_path / 'slurm.conf'
    config.write_text(current)
    result = run_start_local_slurm(tmp_path, config, 'idle\\n')
    assert result.returncode == 0, result.stdout + result.stderr
    assert '[local_slurm] slurm already up: ' in result.stdout
    assert config.read_text() == current


def test_start_local_slurm_asks_for_root_to_upgrade_an_older_config_of_its_own(tmp_path):
    """The config of the script's previous version (no header, no preemption, no partition
    ``urgent``), its cluster running: the tests of preemption need the current one, and
    restarting the daemons needs root."""
    older = ''.join(line for line in current_config().splitlines(keepends=True)
                    if not line.startswith(('#', 'Preempt', 'PartitionName=urgent')))
    config = tmp_path / 'slurm.conf'
    config.write_text(older)
    result = run_start_local_slurm(tmp_path, config, 'idle\\n')
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'runs an older config of this script' in result.stderr
    assert "run 'sudo make slurm'" in result.stderr
    assert config.read_text() == older
