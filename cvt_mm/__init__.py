"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmsegmentation.

Importing the package registers ``CvT`` in all three libraries' MODELS registries and lets
mmengine resume Runner checkpoints on torch's safe unpickler.
"""
from .apis.model_zoo import register_model_index
from .engine.safe_loading import allow_runner_checkpoints
from .models import CvT
from .version import __version__

allow_runner_checkpoints()
register_model_index()

__all__ = ['__version__', 'CvT']
