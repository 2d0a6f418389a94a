"""cvt_mm: the CvT backbone for mmpretrain, mmdet and mmsegmentation.

Importing the package registers ``CvT`` in all three libraries' MODELS registries, the
classifiers in mmpretrain's model hub (``list_models('cvt*')``), cvt_mm's hooks, dataset
wrapper, optimizer constructor and storage backend in mmengine's root registries, and lets
mmengine resume Runner checkpoints on torch's safe unpickler. Where mmcv was built without its
compiled ops, torchvision's RoIAlign and NMS stand in for them (:mod:`.mmcv_ext_fallback`), so
that mmdet's and mmseg's models import and Mask R-CNN and UperNet run.
"""
# Bound by name: the start-up finder (cvt_mm_mmcv_ext_finder) may have loaded the module before
# this package, and an import of a loaded submodule binds no attribute.
from . import mmcv_ext_fallback  # noqa: F401
from .mmcv_ext_fallback import require_mmcv

require_mmcv()  # before anything imports mmcv: a missing one is named in one line

from . import datasets  # noqa: E402,F401  (registers SkipBadSamples and SkippedSamplesHook)
from .apis.model_zoo import register_model_index  # noqa: E402
from .engine import optimizers  # noqa: E402,F401  (registers LayerDecayOptimWrapperConstructor)
from .engine.safe_loading import allow_runner_checkpoints  # noqa: E402
from .mmcv_ext_fallback import install as install_mmcv_ext_fallback  # noqa: E402
from .models import CvT  # noqa: E402
from .version import __version__  # noqa: E402

allow_runner_checkpoints()
install_mmcv_ext_fallback()  # none of the imports above imports mmcv.ops
register_model_index()

__all__ = ['__version__', 'CvT']
