"""Check a wheelhouse of tools/build_offline_wheels.sh against a target image's package list,
without the target: a fresh virtual environment holds only the distributions of that list (linked
from this environment, so the same Python minor version), the wheelhouse goes in with
``--no-deps`` as on the target, then the libraries import and, with ``--benchmark``, the device
section runs on the CPU with ``--quick``.

    WHEELS=minimal bash tools/build_offline_wheels.sh /tmp/wheelhouse 3.11
    python tools/check_offline_wheels.py tools/ci/gpu_image_packages.txt /tmp/wheelhouse --benchmark

``packages.txt`` names the image's distributions, separated by commas, spaces or newlines
(lines starting with ``#`` skipped); tools/ci/gpu_image_packages.txt is this workplace's GPU
image's.
The virtual environment is made in a temporary folder and removed at the end.
"""
import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORTS = 'import cvt_mm, mmpretrain.models, mmdet.models, mmseg.models'
# Linked packages that find their binaries relative to their real path: copied instead.
COPIED = {'opencv-python', 'opencv-python-headless'}
# The image's distributions that this environment has under another name (the same modules).
LOCAL_NAMES = {'opencv-python-headless': 'opencv-python'}


def normalized(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def read_package_list(path: Path) -> set:
    """The normalized distribution names of a package list: names separated by commas, spaces
    or newlines, lines starting with ``#`` skipped."""
    listed = '\n'.join(line for line in path.read_text().splitlines()
                       if not line.startswith('#'))
    return {normalized(name) for name in re.split(r'[,\s]+', listed) if name}


def installed_distributions() -> dict:
    """This environment's distributions by normalized name."""
    return {normalized(dist.metadata['Name']): dist
            for dist in importlib.metadata.distributions()}


def installed_here(names: set, installed: dict) -> set:
    """``names`` as this environment (``installed``) has them: an image's distribution that is
    not installed here but is under another name (LOCAL_NAMES) takes that name."""
    return {name if name in installed else LOCAL_NAMES.get(name, name) for name in names}


def populate(site: Path, wanted: set, installed: dict) -> list:
    """Link (or copy) into ``site`` the files of every distribution of ``installed`` that is in
    ``wanted``; returns the names found."""
    found = []
    for name, dist in installed.items():
        if name not in wanted:
            continue
        found.append(name)
        tops = {file.parts[0] for file in dist.files or []
                if file.parts[0] not in ('..', '__pycache__') and file.suffix != '.pth'}
        for top in tops:
            source, target = Path(dist.locate_file(top)), site / top
            if not source.exists() or target.exists():
                continue
            if name in COPIED:
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
            else:
                target.symlink_to(source)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('packages', type=Path, help="the target image's distribution names")
    parser.add_argument('wheelhouse', type=Path, help='what build_offline_wheels.sh wrote')
    parser.add_argument('--benchmark', action='store_true',
                        help='also run tools/benchmark.py --device cpu --quick there')
    args = parser.parse_args()
    installed = installed_distributions()
    wanted = installed_here(read_package_list(args.packages), installed)
    wheels = sorted(args.wheelhouse.glob('*.whl'))
    if not wheels:
        raise SystemExit(f'{args.wheelhouse}: no wheels')
    carried = {normalized(wheel.name.split('-')[0]) for wheel in wheels}
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / 'target'
        subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
        python = venv / 'bin' / 'python'
        site = Path(subprocess.run(
            [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
            check=True, capture_output=True, text=True).stdout.strip())
        found = populate(site, wanted - carried, installed)
        print(f'{len(found)} of the image\'s distributions linked from this environment; '
              f'{len(wheels)} wheels to install')
        subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install',
                        '--quiet', '--no-index', '--no-deps', *map(str, wheels)], check=True)
        # Outside the checkout, so that the installed cvt_mm is the one imported.
        subprocess.run([str(python), '-c', f'{IMPORTS}; print("imports OK")'], check=True,
                       cwd=folder)
        if args.benchmark:
            subprocess.run([str(python), str(REPO_ROOT / 'tools' / 'benchmark.py'), '--device',
                            'cpu', '--quick', '--out', str(Path(folder) / 'benchmark.md')],
                           check=True, cwd=REPO_ROOT)
    return 0


if __name__ == '__main__':
    sys.exit(main())
