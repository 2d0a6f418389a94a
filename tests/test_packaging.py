"""mim finds cvt_mm's model index on both installs: a wheel (setup.py copies configs/ and
model-index.yml into cvt_mm/.mim) and an editable install (setup.py's editable wheel writes
the index into site-packages/cvt_mm/.mim, see EditableWheelWithModelIndex). Each is installed
from a copy of the checkout into tmp_path, and mim, run in a child process, sees it first.
The wheel's cvt_mm, imported away from any checkout, builds its model zoo's classifiers from
the configs it carries (``config_dir()``'s installed-package branch)."""
import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

# tools/ too, with its Python packages (the benchmark's), which no install may pick up.
PROJECT_FILES = ('setup.py', 'pyproject.toml', 'README.md', 'LICENSE', 'model-index.yml',
                 'configs', 'cvt_mm', 'cvt_mm_mmcv_ext_finder.py', 'tools')
# Without site (-S): the environment's packages on the path, but none of its .pth files (its own
# cvt_mm install's included); then the install under test as a site directory, whose .pth files
# site processes. mmdet's models import before cvt_mm, on the stand-in the finder serves.
MMDET_FIRST = '''
import site, sys
sys.path.append({packages!r})
site.addsitedir({site_dir!r})
import mmdet.models
assert 'cvt_mm' not in sys.modules
from mmcv.utils import ext_loader
print(type(sys.modules['mmcv._ext']).__name__, ext_loader.check_ops_exist(),
      sys.modules['cvt_mm.mmcv_ext_fallback'].__file__)
'''

# The installed-package user's lines, in the same kind of process: the environment's
# dependencies, then the wheel's install as the only site directory.
INSTALLED_GET_MODEL = '''
import json, site, sys
sys.path.append({packages!r})
site.addsitedir({site_dir!r})
import cvt_mm
from cvt_mm.apis import config_dir
from mmpretrain import get_model, list_models
from mmpretrain.apis import ModelHub
model = get_model({name!r})
print(json.dumps(dict(
    cvt_mm=cvt_mm.__file__, config_dir=str(config_dir()), config=model._config.filename,
    configs={{name: ModelHub._models_dict[name].config for name in list_models('cvt*')}},
    model=type(model).__name__, backbone=type(model.backbone).__name__,
    parameters=sum(parameter.numel() for parameter in model.parameters()), path=sys.path)))
'''


def assert_mmdet_imports_first_on_the_stand_in(site_dir, cvt_mm_dir):
    code = MMDET_FIRST.format(packages=sysconfig.get_paths()['purelib'], site_dir=str(site_dir))
    result = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True,
                            timeout=300, cwd=site_dir)  # not the checkout: '' is on the path
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        'FallbackExt', 'False', str(cvt_mm_dir / 'mmcv_ext_fallback.py')]


def copy_project(root):
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name,
                            ignore=shutil.ignore_patterns('__pycache__', '.mim', '*.egg-info'))
        else:
            shutil.copy(source, root / name)
    return root


@pytest.fixture
def project_copy(tmp_path):
    return copy_project(tmp_path / 'checkout')


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory):
    """A wheel of the checkout, built once and installed alone into a directory of its own."""
    root = tmp_path_factory.mktemp('wheel')
    project = copy_project(root / 'checkout')
    pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(root / 'dist'), str(project))
    (wheel, ) = (root / 'dist').glob('cvt_mm-*.whl')
    pip('install', '--no-deps', '--target', str(root / 'site'), str(wheel))
    return root / 'site'


def test_the_wheel_holds_the_package_and_the_finder_only(wheel_site):
    """The benchmark (tools/benchmarking/) and the other tools stay out of the installed
    package."""
    (wheel, ) = (wheel_site.parent / 'dist').glob('cvt_mm-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split('/')[0] for name in names}
    assert {name for name in top_level if not name.endswith('.dist-info')} == {
        'cvt_mm', 'cvt_mm_mmcv_ext_finder.py', 'cvt_mm_mmcv_ext_finder.pth'}, top_level
    assert not [name for name in names if 'benchmarking' in name or 'cvt_mm/benchmark' in name]


def pip(*args):
    result = subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check',
                             '--no-input', *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mim(site_dir, *args) -> str:
    """mim's output with ``site_dir`` ahead of the environment's own cvt_mm."""
    env = dict(os.environ, PYTHONPATH=str(site_dir))
    result = subprocess.run([sys.executable, '-W', 'ignore', '-m', 'mim', *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_mim_finds_the_model_index(site_dir):
    search = mim(site_dir, 'search', 'cvt_mm')
    assert 'cvt-13_3rdparty_in1k' in search  # configs/metafile.yml
    assert 'cvt upernet' in search  # configs/metafile_dense.yml
    listed = mim(site_dir, 'list').splitlines()
    assert any(line.split()[:2] == ['cvt-mm', '0.1.0'] for line in listed), listed


def test_the_package_imports_no_test_helpers():
    """cvt_mm.testing (reference models, the fast tests' arch) is for the tests and the
    benchmark: nothing a user imports from cvt_mm imports it."""
    offenders = []
    for path in sorted((REPO_ROOT / 'cvt_mm').rglob('*.py')):
        module = path.relative_to(REPO_ROOT).with_suffix('')
        if module.parts[:2] == ('cvt_mm', 'testing'):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                # The absolute name of a relative import, from the importing module's package.
                base = '.'.join(module.parts[:len(module.parts) - node.level])
                names = [f'{base}.{node.module}' if node.level and node.module else
                         base if node.level else node.module]
                names += [f'{names[0]}.{alias.name}' for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == 'cvt_mm.testing' or name.startswith('cvt_mm.testing.')
                   for name in names):
                offenders.append(f'{path.relative_to(REPO_ROOT)}:{node.lineno}')
    assert not offenders, offenders


def test_mim_reads_the_index_of_a_wheel(wheel_site):
    assert_mim_finds_the_model_index(wheel_site)
    assert_mmdet_imports_first_on_the_stand_in(wheel_site, wheel_site / 'cvt_mm')


def test_wheel_builds_a_zoo_classifier_from_the_configs_it_carries(wheel_site, tmp_path):
    """What a user of the installed package writes, in a process that sees the wheel's cvt_mm
    and no checkout: not this one, nor the environment's editable install (its .pth files are
    not processed, see MMDET_FIRST)."""
    name = 'cvt-13_3rdparty_in1k'
    code = INSTALLED_GET_MODEL.format(packages=sysconfig.get_paths()['purelib'],
                                      site_dir=str(wheel_site), name=name)
    # -I: nor a PYTHONPATH naming the checkout (as tests are run from one).
    result = subprocess.run([sys.executable, '-I', '-S', '-c', code], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads(result.stdout.splitlines()[-1])

    package = wheel_site / 'cvt_mm'
    assert built['cvt_mm'] == str(package / '__init__.py')
    assert built['config_dir'] == str(package / '.mim' / 'configs')
    metafile = yaml.safe_load((REPO_ROOT / 'configs' / 'metafile.yml').read_text())['Models']
    assert built['configs'] == {
        model['Name']: str(package / '.mim' / model['Config']) for model in metafile}
    (metafile_entry, ) = [model for model in metafile if model['Name'] == name]
    assert built['config'] == str(package / '.mim' / metafile_entry['Config'])
    assert (built['model'], built['backbone']) == ('ImageClassifier', 'CvT')
    assert built['parameters'] == metafile_entry['Metadata']['Parameters']
    # Neither this checkout nor the one the environment's editable install points at.
    purelib = Path(sysconfig.get_paths()['purelib'])
    checkouts = {REPO_ROOT, *(Path(line) for pth in purelib.glob('__editable__.cvt_mm-*.pth')
                              for line in pth.read_text().split())}
    assert not checkouts & {Path(entry or tmp_path).resolve() for entry in built['path']}


def test_mim_reads_the_index_of_an_editable_install(project_copy, tmp_path):
    prefix = tmp_path / 'prefix'
    # --ignore-installed: without it pip uninstalls the environment's own cvt_mm first.
    pip('install', '--no-deps', '--no-build-isolation', '--no-warn-script-location',
        '--ignore-installed',
        '--prefix', str(prefix), '-e', str(project_copy))
    (site_dir, ) = prefix.glob('lib/python*/site-packages')
    assert_mim_finds_the_model_index(site_dir)
    # The environment's own install is untouched: cvt_mm still imports away from the checkout.
    check = subprocess.run([sys.executable, '-c', 'import cvt_mm.apis'], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    # The index imports the checkout's metafiles, so mim follows edits there; cvt_mm itself
    # is imported from the checkout (the install's path entry), not from site-packages.
    index = (site_dir / 'cvt_mm' / '.mim' / 'model-index.yml').read_text()
    assert f'- {project_copy.resolve().as_posix()}/configs/metafile.yml' in index
    (path_entry, ) = site_dir.glob('__editable__.cvt_mm-*.pth')
    assert path_entry.read_text().strip() == str(project_copy)
    assert_mmdet_imports_first_on_the_stand_in(site_dir, project_copy / 'cvt_mm')
