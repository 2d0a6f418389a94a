"""tools/setup_env.sh's choices before it installs anything: the interpreter (CVT_MM_PYTHON), and
for compiled mmcv ops (MMCV_OPS=1) what the build needs, checked by tools/mmcv_ops_preflight.py
before a long build starts."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, TOOLS_DIR

sys.path.insert(0, str(TOOLS_DIR))
from mmcv_ops_preflight import Machine, MissingBuildTool, build_plan  # noqa: E402

SETUP_ENV = TOOLS_DIR / 'setup_env.sh'
PREFLIGHT = TOOLS_DIR / 'mmcv_ops_preflight.py'
GPU_LINE = 'NVIDIA H100 80GB HBM3, 535.104.05'


def machine(**changes) -> Machine:
    """A GPU box whose build has what it needs; each test takes one thing away."""
    values = dict(torch_version='2.14.1+cu130', torch_cuda='13.0', cuda_available=True,
                  gpus=[GPU_LINE], capabilities=[(9, 0), (8, 0), (9, 0)], nvcc_release='13.0',
                  nvcc_path='/usr/local/cuda/bin/nvcc', compiler='/usr/bin/c++', arch_list=None)
    values.update(changes)
    return Machine(**values)


def test_plan_names_the_cuda_flavour_and_the_architectures_of_the_gpus():
    assert build_plan(machine()) == ('cuda13.0-sm80_90', '8.0;9.0')
    assert build_plan(machine(arch_list='8.6')) == ('cuda13.0-sm86', '8.6')
    # A minor version apart builds (torch itself only refuses another major version).
    assert build_plan(machine(nvcc_release='13.1'))[0] == 'cuda13.0-sm80_90'


def test_plan_without_a_gpu_builds_cpu_ops():
    assert build_plan(machine(cuda_available=False, gpus=[], capabilities=[],
                              nvcc_path=None, nvcc_release=None)) == ('cpu', '-')


@pytest.mark.parametrize('changes, message', [
    (dict(compiler=None), 'no C++ compiler'),
    (dict(cuda_available=False, capabilities=[]),
     f"nvidia-smi sees {GPU_LINE}, but torch 2.14.1+cu130 (CUDA 13.0) cannot use it: the "
     "driver is older than torch's CUDA build needs"),
    (dict(cuda_available=False, torch_cuda=None, torch_version='2.14.1+cpu'),
     f'nvidia-smi sees {GPU_LINE}, but torch 2.14.1+cpu is a CPU build'),
    (dict(nvcc_path=None, nvcc_release=None),
     'torch 2.14.1+cu130 runs on CUDA 13.0, but there is no nvcc'),
    (dict(nvcc_release='12.4'),
     '/usr/local/cuda/bin/nvcc is CUDA 12.4, but torch 2.14.1+cu130 was built with CUDA 13.0'),
])
def test_plan_names_what_is_missing(changes, message):
    with pytest.raises(MissingBuildTool) as error:
        build_plan(machine(**changes))
    assert str(error.value).startswith(message)


def fake_command(directory: Path, name: str, script: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_preflight_on_this_machine(tmp_path):
    # This torch is a CUDA build, and this machine has no GPU: CPU ops.
    proc = subprocess.run([sys.executable, PREFLIGHT], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout) == (0, 'cpu -\n'), proc.stderr
    # The same machine where nvidia-smi lists a GPU that torch cannot use: a driver older than
    # torch's CUDA build, stopped in one line before any build.
    fake_command(tmp_path / 'bin', 'nvidia-smi', f'echo "{GPU_LINE}"\n')
    env = dict(os.environ, PATH=f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.run([sys.executable, PREFLIGHT], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 1 and proc.stdout == ''
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f'[setup_env] error: MMCV_OPS=1: nvidia-smi sees {GPU_LINE}, but torch '), lines
    assert "the driver is older than torch's CUDA build needs" in lines[0]


def run_setup_env(tmp_path, python: str, **variables) -> subprocess.CompletedProcess:
    env = dict(os.environ, CVT_MM_PYTHON=python, CVT_MM_VENV=str(tmp_path / 'venv'),
               CVT_MM_CACHE=str(tmp_path / 'cache'))
    env.pop('MMCV_OPS', None)  # the caller's own choice does not leak in
    env.update(variables)
    return subprocess.run(['bash', SETUP_ENV], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO_ROOT)


def test_an_unsupported_python_stops_in_one_line_before_anything_is_made(tmp_path):
    fake_command(tmp_path / 'bin', 'python3.9', 'echo 3.9\n')
    proc = run_setup_env(tmp_path, str(tmp_path / 'bin' / 'python3.9'))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f'[setup_env] error: CVT_MM_PYTHON={tmp_path}/bin/python3.9 is Python 3.9; '
        'supported: 3.10, 3.11, 3.12']
    assert not (tmp_path / 'venv').exists()
    proc = run_setup_env(tmp_path, 'no-such-python3')
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        '[setup_env] error: CVT_MM_PYTHON=no-such-python3 does not run a Python interpreter '
        '(give a command on PATH or a path)']
    assert not (tmp_path / 'venv').exists()


def test_makefile_passes_the_interpreter_choice_through(tmp_path):
    # `PYTHON=... make env` used to be overridden by the Makefile's own PYTHON; the variable is
    # CVT_MM_PYTHON, and make hands it to the script (a dry run prints the recipe only).
    proc = subprocess.run(['make', '--no-print-directory', '-n', 'env', 'MMCV_OPS=1'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.stdout.strip() == 'MMCV_OPS=1 bash tools/setup_env.sh'
    fake_command(tmp_path / 'bin', 'python3.9', 'echo 3.9\n')
    env = dict(os.environ, CVT_MM_PYTHON=str(tmp_path / 'bin' / 'python3.9'),
               CVT_MM_VENV=str(tmp_path / 'venv'))
    proc = subprocess.run(['make', 'env'], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60, env=env)
    assert proc.returncode != 0 and 'is Python 3.9; supported: 3.10, 3.11, 3.12' in proc.stderr


def test_an_environment_on_compiled_ops_stays_on_them_unless_told(tmp_path):
    # `make env MMCV_OPS=1`, then `make test` (MMCV_OPS unset) keeps the compiled route; the
    # run stops at the unsupported interpreter, before installing anything.
    (tmp_path / 'venv').mkdir()
    (tmp_path / 'venv' / '.cvt_mm_env_complete').write_text('python=3.11 route=mmcv-compiled\n')
    fake_command(tmp_path / 'bin', 'python3.9', 'echo 3.9\n')
    kept = run_setup_env(tmp_path, str(tmp_path / 'bin' / 'python3.9'))
    assert kept.stdout.splitlines()[0] == (
        f'[setup_env] MMCV_OPS unset: keeping the compiled mmcv ops of {tmp_path}/venv '
        '(MMCV_OPS=0 goes back to mmcv-lite)')
    told = run_setup_env(tmp_path, str(tmp_path / 'bin' / 'python3.9'), MMCV_OPS='0')
    assert told.stdout == '' and told.returncode == 1
