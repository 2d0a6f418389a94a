"""What building mmcv's compiled ops needs, checked before the build (``MMCV_OPS=1 make env``).

Prints ``FLAVOUR ARCH_LIST`` for tools/setup_env.sh: ``cpu -`` where torch sees no GPU, or
``cuda<torch's CUDA>-sm<archs> <TORCH_CUDA_ARCH_LIST>`` (both are in the wheel's cache key, so
a wheel built for one GPU is not reused on another); or, where something is missing, one line
naming it on stderr and exit status 1. Runs with the venv's Python, which has torch and
nothing of cvt_mm yet.
"""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field


class MissingBuildTool(Exception):
    pass


@dataclass
class Machine:
    """What the build depends on, as found on this machine."""
    torch_version: str
    torch_cuda: str | None  # torch.version.cuda: None for a CPU build
    cuda_available: bool
    gpus: list[str] = field(default_factory=list)  # nvidia-smi's 'name, driver' lines
    capabilities: list[tuple[int, int]] = field(default_factory=list)
    nvcc_release: str | None = None  # e.g. '13.0'
    nvcc_path: str | None = None
    compiler: str | None = None
    arch_list: str | None = None  # TORCH_CUDA_ARCH_LIST, where the user set it


def build_plan(machine: Machine) -> tuple[str, str]:
    """(flavour, arch list) of the build, or MissingBuildTool naming what is missing."""
    if machine.compiler is None:
        raise MissingBuildTool(
            'no C++ compiler (c++ or g++ on PATH, or CXX): install one (Debian: build-essential), '
            'or leave MMCV_OPS unset, which needs none')
    if not machine.cuda_available:
        if machine.gpus:
            gpu = machine.gpus[0]
            if machine.torch_cuda is None:
                raise MissingBuildTool(
                    f'nvidia-smi sees {gpu}, but torch {machine.torch_version} is a CPU build: '
                    'install a CUDA build of torch (TORCH_INDEX_URL, docs/install.md)')
            raise MissingBuildTool(
                f'nvidia-smi sees {gpu}, but torch {machine.torch_version} (CUDA '
                f'{machine.torch_cuda}) cannot use it: the driver is older than torch\'s CUDA '
                'build needs; update the driver, or install a torch for an older CUDA '
                '(TORCH_INDEX_URL, docs/install.md)')
        return 'cpu', '-'
    if machine.nvcc_path is None:
        raise MissingBuildTool(
            f'torch {machine.torch_version} runs on CUDA {machine.torch_cuda}, but there is no '
            f'nvcc (CUDA_HOME={os.environ.get("CUDA_HOME", "unset")}, PATH): install the CUDA '
            f'{machine.torch_cuda} toolkit and set CUDA_HOME, or leave MMCV_OPS unset, which '
            'needs no compiler')
    if machine.nvcc_release is None or (machine.nvcc_release.split('.')[0]
                                        != machine.torch_cuda.split('.')[0]):
        raise MissingBuildTool(
            f'{machine.nvcc_path} is CUDA {machine.nvcc_release}, but torch '
            f'{machine.torch_version} was built with CUDA {machine.torch_cuda}: point CUDA_HOME '
            f'at a CUDA {machine.torch_cuda.split(".")[0]}.x toolkit, or install the torch '
            f'built for CUDA {machine.nvcc_release} (TORCH_INDEX_URL, docs/install.md)')
    arch_list = machine.arch_list or ';'.join(
        sorted({f'{major}.{minor}' for major, minor in machine.capabilities}))
    if not arch_list:
        raise MissingBuildTool('torch sees a GPU but reports no compute capability; set '
                               'TORCH_CUDA_ARCH_LIST (e.g. "9.0")')
    archs = '_'.join(re.sub(r'\D', '', arch) for arch in re.split(r'[;\s]+', arch_list) if arch)
    return f'cuda{machine.torch_cuda}-sm{archs}', arch_list


def run(command: list[str]) -> str | None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def nvcc() -> tuple[str | None, str | None]:
    """(path, release) of the nvcc the build would use: CUDA_HOME's, else PATH's."""
    cuda_home = os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')
    path = (os.path.join(cuda_home, 'bin', 'nvcc') if cuda_home else None)
    if path is None or not os.access(path, os.X_OK):
        path = shutil.which('nvcc')
    if path is None:
        return None, None
    match = re.search(r'release (\d+\.\d+)', run([path, '--version']) or '')
    return path, match and match[1]


def this_machine() -> Machine:
    import torch
    smi = run(['nvidia-smi', '--query-gpu=name,driver_version', '--format=csv,noheader']) or ''
    gpus = [line.strip() for line in smi.splitlines() if line.strip()]
    cuda_available = torch.cuda.is_available()
    capabilities = ([torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
                    if cuda_available else [])
    nvcc_path, nvcc_release = nvcc() if cuda_available else (None, None)
    compiler = next(filter(None, (shutil.which(name) for name in
                                  filter(None, (os.environ.get('CXX'), 'c++', 'g++')))), None)
    return Machine(torch.__version__, torch.version.cuda, cuda_available, gpus, capabilities,
                   nvcc_release, nvcc_path, compiler, os.environ.get('TORCH_CUDA_ARCH_LIST'))


def main() -> int:
    try:
        flavour, arch_list = build_plan(this_machine())
    except MissingBuildTool as error:
        print(f'[setup_env] error: MMCV_OPS=1: {error}', file=sys.stderr)
        return 1
    print(flavour, arch_list)
    return 0


if __name__ == '__main__':
    sys.exit(main())
