"""Reading a config's data sets in full (:mod:`cvt_mm.datasets.checks`,
tools/check_dataset.py) and training past bad samples (:mod:`cvt_mm.datasets.robust`). The
synthetic toy data sets are :mod:`cvt_mm.toy`."""
from .checks import DatasetSetupError, Problem, check_config
from .robust import BadSampleError, SkipBadSamples, SkippedSamplesHook, skip_bad_samples

__all__ = ['BadSampleError', 'DatasetSetupError', 'Problem', 'SkipBadSamples',
           'SkippedSamplesHook', 'check_config', 'skip_bad_samples']
