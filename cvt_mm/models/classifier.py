"""mmpretrain classifier configs around the CvT backbone."""
from typing import Union

from .backbones.cvt import CvT


def cvt_classifier_cfg(arch: Union[str, dict] = '13', num_classes: int = 1000,
                       **backbone_kwargs) -> dict:
    """An mmpretrain ``ImageClassifier`` config: CvT, then the final-normed cls token into a
    linear head (the official classifier's layout)."""
    arch_settings = CvT.arch_zoo[arch.lower()] if isinstance(arch, str) else arch
    return dict(
        type='ImageClassifier',
        _scope_='mmpretrain',  # buildable whatever the caller's default scope
        backbone=dict(type='CvT', arch=arch, out_type='cls_token', **backbone_kwargs),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=arch_settings['embed_dims'][-1],
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
