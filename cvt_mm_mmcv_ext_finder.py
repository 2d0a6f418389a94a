"""Serves cvt_mm's stand-in for mmcv's compiled ops (``cvt_mm/mmcv_ext_fallback.py``) to every
Python process of the environment, from start-up.

Installed as a top-level module with ``cvt_mm_mmcv_ext_finder.pth`` (setup.py), which site
imports at start-up: it appends a finder to ``sys.meta_path`` that answers only for
``mmcv._ext`` and only where no other finder has one (mmcv-lite, with torchvision installed).
mmdet's and mmseg's own scripts (``tools/train.py``, ``browse_dataset.py``, ``mim train``)
import ``mmcv.ops`` before they read a config, so the configs' ``custom_imports=['cvt_mm']``
would come too late for them. Standard library only, and nothing more is loaded until
something imports ``mmcv._ext``: start-up stays as fast as without it.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

FALLBACK = 'cvt_mm.mmcv_ext_fallback'


class MmcvExtFinder(importlib.abc.MetaPathFinder):

    def find_spec(self, name, path=None, target=None):
        if name != 'mmcv._ext' or importlib.util.find_spec('torchvision') is None:
            return None
        return importlib.machinery.ModuleSpec(name, StandInLoader())


class StandInLoader(importlib.abc.Loader):

    def create_module(self, spec):
        return fallback_module().stand_in()

    def exec_module(self, module):
        # No loader, as ``import cvt_mm`` installs it: mmcv's check_ops_exist() answers False.
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)


def fallback_module():
    """cvt_mm/mmcv_ext_fallback.py, loaded without cvt_mm/__init__.py, which imports the task
    libraries that are half imported when this runs."""
    if FALLBACK not in sys.modules:
        package = importlib.util.find_spec('cvt_mm')
        location = os.path.join(package.submodule_search_locations[0], 'mmcv_ext_fallback.py')
        spec = importlib.util.spec_from_file_location(FALLBACK, location)
        module = importlib.util.module_from_spec(spec)
        sys.modules[FALLBACK] = module
        spec.loader.exec_module(module)
    return sys.modules[FALLBACK]


if not any(type(finder).__name__ == 'MmcvExtFinder' for finder in sys.meta_path):
    sys.meta_path.append(MmcvExtFinder())
