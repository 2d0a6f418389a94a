"""Registration of cvt_mm modules in the OpenMMLab registries.

A backbone is registered in each task library's MODELS registry (mmpretrain, mmdet, mmseg), so
a config in any of those scopes finds ``type='CvT'`` after ``custom_imports=['cvt_mm']``.
Activations go to mmengine's root MODELS registry, which every scope falls back to.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import MODELS as ROOT_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

TASK_MODEL_REGISTRIES = (MMPRETRAIN_MODELS, MMDET_MODELS, MMSEG_MODELS)


def register_backbone(cls):
    """Class decorator: register ``cls`` under its own name in every task registry."""
    for registry in TASK_MODEL_REGISTRIES:
        registry.register_module(module=cls)
    return cls


def register_activation(cls):
    """Class decorator: register an activation where mmcv's build_activation_layer finds it."""
    ROOT_MODELS.register_module(module=cls)
    return cls
