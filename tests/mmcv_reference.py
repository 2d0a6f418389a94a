"""mmcv's own compiled CPU kernels, what the stand-in for them (``cvt_mm.mmcv_ext_fallback``)
is compared with. The suite's environment has mmcv-lite; ``make test`` (``tools/setup_env.sh
--compiled-ops-reference``) builds mmcv's compiled ops once, caches the wheel and unpacks its
``_ext`` beside the venv. Loaded here as a module of its own, never as ``mmcv._ext``, so the
process keeps the stand-in; ``WITH_COMPILED_MMCV_OPS`` makes another process import it as
``mmcv._ext``, as a full mmcv build would."""
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

REFERENCE_DIR = Path(sys.prefix) / 'mmcv_compiled_ops'


def compiled_ext_path() -> Path:
    found = sorted(REFERENCE_DIR.glob('_ext*.so'))
    if not found:
        raise FileNotFoundError(
            f"no mmcv compiled ops in {REFERENCE_DIR}: run `make test`, or "
            f"`bash tools/setup_env.sh --compiled-ops-reference`, which builds them")
    return found[0]


def load_compiled_ext():
    """mmcv's compiled ``_ext`` as a module object that is not in ``sys.modules``."""
    import torch  # noqa: F401  (the extension links against libtorch, which must be loaded)
    path = compiled_ext_path()
    loader = importlib.machinery.ExtensionFileLoader('mmcv._ext', str(path))
    spec = importlib.util.spec_from_file_location('mmcv._ext', path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def with_compiled_mmcv_ops() -> str:
    """A ``sitecustomize.py`` (tests/helpers.py, ``sitecustomize_env``) under which ``import
    mmcv._ext`` loads the reference kernels: the process runs as on mmcv with its ops."""
    return f'''
import importlib.abc, importlib.machinery, importlib.util, sys

class CompiledMmcvOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'mmcv._ext':
            location = {str(compiled_ext_path())!r}
            return importlib.util.spec_from_file_location(
                name, location, loader=importlib.machinery.ExtensionFileLoader(name, location))

sys.meta_path.insert(0, CompiledMmcvOps())
'''
