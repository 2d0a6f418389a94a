"""Data sets that cvt_mm generates itself: the synthetic toy shapes of the toy configs and the
CPU quickstart (see :mod:`cvt_mm.datasets.toy_shapes`); reading a config's data sets in full
(:mod:`cvt_mm.datasets.checks`, tools/check_dataset.py); training past bad samples
(:mod:`cvt_mm.datasets.robust`)."""
from .checks import DatasetSetupError, Problem, check_config
from .robust import BadSampleError, SkipBadSamples, SkippedSamplesHook, skip_bad_samples
from .toy_shapes import (
    ADE_TOY_CLASSES,
    COMPLETION_MARKER,
    DRAWING_VERSION,
    SHAPE_CLASSES,
    TASKS,
    ToySetOutcome,
    default_params,
    ensure_toy_set,
    make_ade,
    make_coco,
    make_imagenet,
    read_marker,
)

__all__ = ['ADE_TOY_CLASSES', 'COMPLETION_MARKER', 'DRAWING_VERSION', 'SHAPE_CLASSES', 'TASKS',
           'ToySetOutcome', 'default_params', 'ensure_toy_set', 'make_ade', 'make_coco',
           'make_imagenet', 'read_marker']
__all__ += ['BadSampleError', 'DatasetSetupError', 'Problem', 'SkipBadSamples',
            'SkippedSamplesHook', 'check_config', 'skip_bad_samples']
