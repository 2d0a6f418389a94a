"""Registration of cvt_mm modules in the OpenMMLab registries.

A backbone is registered in each task library's MODELS registry (mmpretrain, mmdet, mmseg), so
a config in any of those scopes finds ``type='CvT'`` after ``custom_imports=['cvt_mm']``.
Activations go to mmengine's root MODELS registry, which every scope falls back to for a name it
lacks; :func:`build_activation` builds cvt_mm's own by name in any scope.
"""
from mmcv.cnn import build_activation_layer
from mmengine.registry import MODELS as ROOT_MODELS

from cvt_mm.tasks import TASKS

TASK_MODEL_REGISTRIES = tuple(task.registry('MODELS') for task in TASKS)


def register_backbone(cls):
    """Class decorator: register ``cls`` under its own name in every task registry."""
    for registry in TASK_MODEL_REGISTRIES:
        registry.register_module(module=cls)
    return cls


# cvt_mm's activations by name. mmpretrain and mmseg register a QuickGELU of their own, which
# mmengine's lookup finds first under their default scope.
OWN_ACTIVATIONS = {}


def register_activation(cls):
    """Class decorator: register an activation where mmcv's build_activation_layer finds it."""
    ROOT_MODELS.register_module(module=cls)
    OWN_ACTIVATIONS[cls.__name__] = cls
    return cls


def build_activation(cfg: dict):
    """mmcv's ``build_activation_layer``, with a name that cvt_mm registered built as cvt_mm's
    class whatever the default scope (a scoped name, e.g. 'mmpretrain.QuickGELU', still
    chooses)."""
    cfg = dict(cfg)
    if isinstance(cfg['type'], str):
        cfg['type'] = OWN_ACTIVATIONS.get(cfg['type'], cfg['type'])
    return build_activation_layer(cfg)
