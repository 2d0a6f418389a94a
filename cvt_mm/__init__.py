"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmsegmentation.

Importing the package registers ``CvT`` in all three libraries' MODELS registries.
"""
from .version import __version__
from .models import CvT
from .safe_loading import allow_runner_checkpoints

allow_runner_checkpoints()

__all__ = ['__version__', 'CvT']
