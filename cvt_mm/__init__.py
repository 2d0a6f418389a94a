"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmsegmentation.

Importing the package registers ``CvT`` in all three libraries' MODELS registries, the
classifiers in mmpretrain's model hub (``list_models('cvt*')``), cvt_mm's hooks, dataset
wrapper, optimizer constructor and storage backend in mmengine's root registries, and lets
mmengine resume Runner checkpoints on torch's safe unpickler.
"""
from . import datasets  # noqa: F401  (registers SkipBadSamples and SkippedSamplesHook)
from .apis.model_zoo import register_model_index
from .engine import optimizers  # noqa: F401  (registers LayerDecayOptimWrapperConstructor)
from .engine.safe_loading import allow_runner_checkpoints
from .models import CvT
from .version import __version__

allow_runner_checkpoints()
register_model_index()

__all__ = ['__version__', 'CvT']
