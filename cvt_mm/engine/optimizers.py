"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model itself for
``get_layer_depth``, which only mmpretrain's classifiers have; mmdet's and mmseg's
``LearningRateDecayOptimizerConstructor`` know ConvNeXt, BEiT and MAE by name and raise for
anything else. :class:`LayerDecayOptimWrapperConstructor` asks the backbone, so one config key
works for classifiers, detectors and segmentors alike.
"""
from collections import defaultdict
from typing import Callable, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

DepthFn = Callable[[str], Tuple[int, int]]


def layer_depth_fn(model: nn.Module, backbone_prefix: str = 'backbone.') -> DepthFn:
    """``name -> (depth, num_layers)`` for the parameters of ``model``.

    The backbone's ``get_layer_depth(name, prefix)`` when the model has a backbone that defines
    it (names outside the backbone get the last depth from it), else the model's own
    ``get_layer_depth(name)`` (a bare backbone, or a model that defines one).

    Args:
        model (nn.Module): The model to optimise (unwrapped from DDP).
        backbone_prefix (str): Where the backbone's parameters are in the model's parameter
            names. Defaults to 'backbone.'.

    Raises:
        NotImplementedError: Neither the backbone nor the model defines ``get_layer_depth``.
    """
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, backbone_prefix)
    if backbone is None and hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    owner = type(backbone if backbone is not None else model).__name__
    raise NotImplementedError(f'layer-wise lr decay needs get_layer_depth(param_name, prefix) '
                              f'on the backbone; {owner} does not define it')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups whose lr decays with the backbone depth of their parameters.

    A parameter at depth ``d`` of ``num_layers`` (the backbone's ``get_layer_depth``; see
    ``CvT.get_layer_depth``) trains at ``lr * layer_decay_rate ** (num_layers - d - 1)``,
    mmpretrain's formula. Parameters outside the backbone (neck, heads) are at the last depth
    and keep the base lr. Configured as mmpretrain's constructor is::

        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.9, norm_decay_mult=0.,
                               custom_keys={'cls_token': dict(decay_mult=0.)}))

    Everything in ``paramwise_cfg`` but ``layer_decay_rate`` is applied first by mmengine's
    ``DefaultOptimWrapperConstructor``, exactly as in a config without layer decay:
    ``custom_keys`` (whose ``decay_mult`` wins over the other weight-decay rules, as in
    mmpretrain's constructor), ``norm_decay_mult`` (every BatchNorm, LayerNorm, GroupNorm and
    InstanceNorm, so also the BatchNorms of CvT's conv projections), ``bias_decay_mult``,
    ``flat_decay_mult``, ``dwconv_decay_mult``, ``bypass_duplicate``. Where mmpretrain ignores a
    custom key's ``lr_mult``, here it multiplies the depth's lr. Frozen parameters are left
    out, as mmengine leaves them out.

    Parameters that end up with the same settings share one group (fewer optimizer groups
    than one per tensor); each group records its ``layer_id`` and ``lr_scale``. The groups are
    logged (``print_log``) when the optimizer is built.

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config, with ``optimizer``.
        paramwise_cfg (dict, optional): As mmengine's, plus ``layer_decay_rate`` (float, the
            factor per depth; 1 turns the decay off). Defaults to None (no decay).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = float(paramwise_cfg.pop('layer_decay_rate', 1.))
        if not 0 < self.layer_decay_rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {self.layer_decay_rate}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError('layer-wise lr decay needs optimizer.lr')

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   **kwargs) -> None:
        """mmengine's parameter groups, scaled by depth and merged (at the top level)."""
        if prefix:  # mmengine recurses into the children: its own rules only
            super().add_params(params, module, prefix, **kwargs)
            return
        depth_of = layer_depth_fn(module)
        names = {id(param): name for name, param in module.named_parameters()}
        groups: List[dict] = []
        super().add_params(groups, module, prefix, **kwargs)

        merged, merged_names = {}, defaultdict(list)
        for group in groups:
            (param, ) = group['params']
            depth, num_layers = depth_of(names[id(param)])
            scale = self.layer_decay_rate ** (num_layers - depth - 1)
            group.update(lr=group.get('lr', self.base_lr) * scale, lr_scale=scale,
                         layer_id=depth)
            settings = tuple(sorted((key, value) for key, value in group.items()
                                    if key != 'params'))
            merged.setdefault(settings, dict(group, params=[]))['params'].append(param)
            merged_names[settings].append(names[id(param)])
        self._log_groups([(group, merged_names[settings])
                          for settings, group in merged.items()])
        params.extend(merged.values())

    def _log_groups(self, groups: List[Tuple[dict, List[str]]]) -> None:
        """One line per group, by depth: lr, scale, weight decay and some tensor names."""
        lines = [f'layer-wise lr decay, rate {self.layer_decay_rate}: {len(groups)} parameter '
                 'groups']
        for group, group_names in sorted(groups, key=lambda item: item[0]['layer_id']):
            shown = ', '.join(group_names[:3])
            if len(group_names) > 3:
                shown += f' and {len(group_names) - 3} more'
            lines.append(f'  depth {group["layer_id"]}: lr={group["lr"]:.4g} '
                         f'(x{group["lr_scale"]:.4g}), '
                         f'weight_decay={group.get("weight_decay", self.base_wd)}, '
                         f'{len(group_names)} tensors: {shown}')
        print_log('\n'.join(lines), logger='current')
