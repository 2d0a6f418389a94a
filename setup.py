"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmseg."""
import re
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).parent
# What mim and `cvt_mm.apis.config_dir()` look for inside a package installed from a wheel.
MIM_FILES = ('configs', 'model-index.yml')
# Imported by site at start-up: serves cvt_mm's stand-in for mmcv's compiled ops to processes
# that import mmcv.ops before cvt_mm (cvt_mm_mmcv_ext_finder.py says why).
STARTUP_PTH = ('cvt_mm_mmcv_ext_finder.pth', 'import cvt_mm_mmcv_ext_finder\n')


def read_version():
    namespace = {}
    exec((ROOT / 'cvt_mm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


def add_mim_extension():
    """Copy the configs and the model index into cvt_mm/.mim for a wheel or a plain install,
    as OpenMMLab packages do; an editable install reads them from the checkout instead (and
    gets an index for mim, see EditableWheelWithModelIndex)."""
    if not {'install', 'bdist_wheel', 'sdist', 'build'} & set(sys.argv):
        return
    mim_root = ROOT / 'cvt_mm' / '.mim'
    shutil.rmtree(mim_root, ignore_errors=True)
    mim_root.mkdir()
    for name in MIM_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, mim_root / name)
        elif source.is_file():
            shutil.copy(source, mim_root / name)


class BuildPyWithStartupFinder(build_py):
    """build_py, plus the start-up .pth at the root of the wheel (site-packages)."""

    def run(self):
        super().run()
        name, text = STARTUP_PTH
        Path(self.build_lib, name).write_text(text)


class EditableWheelWithModelIndex(editable_wheel):
    """An editable install with ``cvt_mm/.mim/model-index.yml`` in site-packages for mim.

    mim (``mim search``, ``mim list``) looks for the index in ``<site-packages>/cvt_mm``,
    beside the distribution's metadata, not where ``cvt_mm`` is imported from; an editable
    install has no such directory. This one writes the index there, importing the checkout's
    metafiles by their absolute paths (so it follows edits), and makes the install a path
    entry for the checkout (``package_dir`` below) rather than setuptools' import hook: a
    directory ``site-packages/cvt_mm`` would otherwise shadow the hook as a namespace package.
    """

    def _select_strategy(self, name, tag, build_lib):
        return ModelIndexStrategy(super()._select_strategy(name, tag, build_lib))


class ModelIndexStrategy:
    """setuptools' editable strategy, plus the model index (see EditableWheelWithModelIndex)."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.strategy.__exit__(*exc_info)

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        index = re.sub(r'^(\s*- )(\S+\.yml)$',
                       lambda match: match[1] + (ROOT / match[2]).resolve().as_posix(),
                       (ROOT / 'model-index.yml').read_text(), flags=re.MULTILINE)
        wheel.writestr('cvt_mm/.mim/model-index.yml', index)
        # Processed after setuptools' __editable__ path entry (site sorts the .pth files by
        # name), which puts the checkout, and so the finder's module, on sys.path.
        wheel.writestr(*STARTUP_PTH)


add_mim_extension()
setup(
    name='cvt_mm',
    version=read_version(),
    description='CvT (Convolutional vision Transformer) backbone for mmpretrain, mmdet and mmseg',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['cvt_mm', 'cvt_mm.*']),
    py_modules=['cvt_mm_mmcv_ext_finder'],
    # The checkout is the package's parent: an editable install puts it on sys.path.
    package_dir={'': '.'},
    cmdclass={'build_py': BuildPyWithStartupFinder, 'editable_wheel': EditableWheelWithModelIndex},
    include_package_data=True,
    package_data={'cvt_mm': ['.mim/model-index.yml', '.mim/configs/**/*.py',
                             '.mim/configs/**/*.yml', '.mim/configs/**/*.md']},
    # Ranges the project is known to work with; tools/setup_env.sh installs the combination
    # that CI tests (docs/install.md).
    install_requires=[
        # 2.6: the oldest torch with every API the package calls (tests/test_torch_minimum.py
        # lists them), e.g. add_safe_globals' (global, name) pairs, which `import cvt_mm` uses.
        'torch>=2.6',
        'torchvision',
        'mmengine>=0.10.3,<0.11',
        'mmdet>=3.3.0,<3.4',
        'mmsegmentation>=1.2.2,<1.3',
        'mmpretrain>=1.2.0,<1.3',
        'numpy<2',  # mmcv 2.1 / mmdet 3.3 / mmpretrain 1.2 predate numpy 2
        # <81: mmengine imports pkg_resources at run time. >=64: pip's editable installs
        # (PEP 660); without it, openmim's dependency openxlab would pull setuptools 60.
        'setuptools>=64,<81',
        'model-index',  # reads the metafiles for mmpretrain's model hub (cvt_mm.apis)
        'pycocotools',
        'safetensors',
        'ftfy',  # imported by mmseg without being declared
        'regex',  # imported by mmseg without being declared
    ],
    # mmcv is not among them, as in OpenMMLab's own packages: it comes either as mmcv-lite (pure
    # Python, tools/setup_env.sh's default; cvt_mm serves the compiled ops the configs call from
    # torchvision) or as mmcv with its compiled ops, and one requirement cannot accept either.
    # `import cvt_mm` checks that one of them, 2.0 or 2.1, is there (mmdet 3.3 and mmseg 1.2
    # refuse mmcv>=2.2). The extra `mmcv-lite` installs the first.
    extras_require={
        'mmcv-lite': ['mmcv-lite>=2.0.0,<2.2.0'],
        # The command lines' progress bars, tables and plots (tools/).
        'tools': ['rich', 'matplotlib'],
        'tests': [
            'pytest',
            'pytest-xdist',
            'ruff>=0.6',
            # Reference implementation for parity tests; 4.49+ breaks `import mmpretrain.models`.
            'transformers>=4.40,<4.49',
            # timm's Swin-T in the benchmark's device section (tools/benchmark.py --device).
            'timm',
            # `mim search cvt_mm` and `mim list` on both installs (tests/test_packaging.py).
            'openmim',
        ],
        # ONNX export (tools/deployment/pytorch2onnx.py) and running the exported graphs.
        'deploy': ['onnx', 'onnxruntime', 'onnxscript'],
        # tools/check_parity.py, which writes docs/parity.md's numbers.
        'docs': ['transformers>=4.40,<4.49'],
        # mmdet's tools/analysis_tools/analyze_logs.py plot_curve (docs/library_tools.md).
        'plot': ['seaborn', 'matplotlib'],
    },
)
