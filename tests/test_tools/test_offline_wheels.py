"""The minimal offline wheelhouse (tools/build_offline_wheels.sh, WHEELS=minimal) carries every
distribution that importing the libraries loads and the GPU image (tools/ci/gpu_image_packages.txt)
lacks: without one of them, ``import mmdet.models`` (or mmseg's, mmpretrain's) fails there."""
import json
import re
import subprocess
import sys

from helpers import TOOLS_DIR

sys.path.insert(0, str(TOOLS_DIR))
from check_offline_wheels import (  # noqa: E402
    IMPORTS,
    LOCAL_NAMES,
    installed_distributions,
    installed_here,
    normalized,
    read_package_list,
)

# The distributions that the imports load from this environment, by name.
LOADED = f'''
import importlib.metadata, json, sys
{IMPORTS}
owners = importlib.metadata.packages_distributions()
print(json.dumps(sorted({{dist for module in list(sys.modules)
                          for dist in owners.get(module.split('.')[0], [])}})))
'''

# What this environment loads that the target gets otherwise: cvt_mm's own wheel, mmcv-lite (or
# mmcv, on the compiled route), carried beside the minimal set, and lazy-importer, which
# importlib-metadata >= 10 (here) needs and the < 10 that is carried does not.
CARRIED_OTHERWISE = {'cvt-mm', 'mmcv-lite', 'mmcv', 'lazy-importer'}
IMAGE_NAME = {local: image for image, local in LOCAL_NAMES.items()}
# pkg_resources (setuptools, which the image has) loads these where they are installed and its
# own vendored copies where they are not.
VENDORED_BY_SETUPTOOLS = {'backports-tarfile', 'jaraco-context', 'jaraco-functools',
                          'jaraco-text', 'more-itertools', 'autocommand', 'tomli'}


def minimal_set() -> set:
    script = (TOOLS_DIR / 'build_offline_wheels.sh').read_text()
    words = re.search(r'^MINIMAL=\((.*?)\)', script, re.S | re.M).group(1).split()
    return {normalized(re.split(r'[<>=!]', word.strip('"'))[0]) for word in words}


def test_minimal_wheelhouse_carries_what_the_image_lacks():
    proc = subprocess.run([sys.executable, '-c', LOADED], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {IMAGE_NAME.get(normalized(name), normalized(name))
              for name in json.loads(proc.stdout.strip().splitlines()[-1])}
    image = read_package_list(TOOLS_DIR / 'ci' / 'gpu_image_packages.txt')
    minimal = minimal_set()
    assert {'mmdet', 'mmengine', 'numpy'} <= minimal  # the parse found the list
    assert {'torch', 'torchvision', 'scipy'} <= image
    missing = loaded - image - minimal - VENDORED_BY_SETUPTOOLS - CARRIED_OTHERWISE
    assert not missing, f'loaded, but neither in the GPU image nor in MINIMAL: {missing}'


def test_package_list_reads_commas_spaces_newlines_and_skips_comments(tmp_path):
    listed = tmp_path / 'packages.txt'
    listed.write_text('# the image\nNumPy, torch  Pillow\nzope.interface\n# scipy\n')
    assert read_package_list(listed) == {'numpy', 'torch', 'pillow', 'zope-interface'}


def test_an_image_name_takes_the_local_name_only_where_it_is_not_installed(monkeypatch):
    # numpy is installed here, so a local name for it is not used; a name not installed here is.
    monkeypatch.setitem(LOCAL_NAMES, 'numpy', 'not-numpy')
    monkeypatch.setitem(LOCAL_NAMES, 'not-installed-here', 'torch')
    assert installed_here({'numpy', 'not-installed-here', 'scipy'}, installed_distributions()) == {
        'numpy', 'torch', 'scipy'}
