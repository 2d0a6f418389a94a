"""The toy: CvT in small, on synthetic shapes, on a CPU.

* :mod:`.shapes`: the synthetic shape data sets in the COCO, ADE20K and ImageNet layouts
  (tools/make_toy_data.py is its command line);
* :mod:`.shrinking`: any config made a small run (data re-rooted, image sizes scaled, schedule
  shortened), for the quickstart, the transfer benchmark's ``--toy`` runs and the tests;
* :mod:`.quickstart`: the demo behind ``make demo`` (tools/quickstart.py): pretrain a classifier
  on the toy shapes, train Mask R-CNN from it, evaluate and draw.

The toy configs are in configs/toy/; the architecture they train (``demo_arch``, one that
learns in CPU minutes) is defined in configs/toy/_base_/shared.py. The smaller architecture
of the fast tests is :data:`cvt_mm.testing.FAST_TEST_ARCH`.
"""
from .quickstart import run_quickstart
from .shapes import (
    ADE_TOY_CLASSES,
    COMPLETION_MARKER,
    DRAWING_VERSION,
    LAYOUTS,
    SHAPE_CLASSES,
    ToySetOutcome,
    default_params,
    ensure_toy_set,
    make_ade,
    make_coco,
    make_imagenet,
    read_marker,
)
from .shrinking import shrink_config

__all__ = ['ADE_TOY_CLASSES', 'COMPLETION_MARKER', 'DRAWING_VERSION', 'SHAPE_CLASSES', 'LAYOUTS',
           'ToySetOutcome', 'default_params', 'ensure_toy_set', 'make_ade', 'make_coco',
           'make_imagenet', 'read_marker', 'run_quickstart', 'shrink_config']
