"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model itself for
``get_layer_depth``, which only mmpretrain's classifiers have; mmdet's and mmseg's
``LearningRateDecayOptimizerConstructor`` know ConvNeXt, BEiT and MAE by name and raise for
anything else. :class:`LayerDecayOptimWrapperConstructor` asks the backbone, so one config key
works for classifiers, detectors and segmentors alike.
"""
import difflib
from collections import defaultdict
from typing import Callable, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

DepthFn = Callable[[str], Tuple[int, int]]

# What mmengine's DefaultOptimWrapperConstructor.add_params reads from paramwise_cfg; it
# ignores any other key without a word, so a misspelt one would train with another recipe.
DEFAULT_PARAMWISE_KEYS = ('custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult',
                          'dwconv_decay_mult', 'flat_decay_mult', 'bypass_duplicate',
                          'dcn_offset_lr_mult')
PARAMWISE_KEYS = ('layer_decay_rate', ) + DEFAULT_PARAMWISE_KEYS
# mmdet's and mmseg's LearningRateDecayOptimizerConstructor take these instead.
FOREIGN_DECAY_KEYS = ('decay_rate', 'decay_type', 'num_layers')


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
    out, as mmengine leaves them out. ``paramwise_cfg=dict(layer_decay_rate=0.9)`` alone is
    enough for the decay.

    What mmengine would ignore without a word is refused with a ``ValueError`` naming it: a
    ``paramwise_cfg`` key nothing reads (a misspelling, or mmdet's ``decay_rate``), a custom
    key that matches no parameter name, an entry of a custom key that neither this
    constructor nor the optimizer reads, ``flat_decay_mult`` without a weight decay.

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
        check_paramwise_keys(paramwise_cfg)
        self.layer_decay_rate = float(paramwise_cfg.get('layer_decay_rate', 1.))
        if not 0 < self.layer_decay_rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {self.layer_decay_rate}')
        # layer_decay_rate stays in paramwise_cfg (mmengine's add_params does not read it):
        # with an empty paramwise_cfg, mmengine would put every parameter in one group at the
        # base lr and never call add_params.
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError('layer-wise lr decay needs optimizer.lr')
        if 'flat_decay_mult' in paramwise_cfg and self.base_wd is None:
            # mmengine refuses the other *_decay_mult without a weight decay, but not this one.
            raise ValueError('paramwise_cfg.flat_decay_mult needs optimizer.weight_decay')

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        # mmengine copies every entry of a custom key into the parameter group, where the
        # optimizer ignores the names it does not know.
        known = {'lr_mult', 'decay_mult'} | set(optim_wrapper.optimizer.defaults)
        for key, options in self.paramwise_cfg.get('custom_keys', {}).items():
            for option in set(options) - known:
                raise ValueError(f"paramwise_cfg.custom_keys['{key}'].{option} is read neither "
                                 f'by the constructor (lr_mult, decay_mult) nor by '
                                 f'{type(optim_wrapper.optimizer).__name__}')
        return optim_wrapper

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   **kwargs) -> None:
        """mmengine's parameter groups, scaled by depth and merged (at the top level)."""
        if prefix:  # mmengine recurses into the children: its own rules only
            super().add_params(params, module, prefix, **kwargs)
            return
        depth_of = layer_depth_fn(module)
        names = {id(param): name for name, param in module.named_parameters()}
        check_custom_keys_match(self.paramwise_cfg.get('custom_keys', {}), names.values(),
                                type(module).__name__)
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


def check_paramwise_keys(paramwise_cfg: dict) -> None:
    """Refuse the keys of ``paramwise_cfg`` that no one would read."""
    for key in paramwise_cfg:
        if key in PARAMWISE_KEYS:
            continue
        if key in FOREIGN_DECAY_KEYS:
            hint = (" (mmdet's and mmseg's decay constructor key; here the rate is "
                    "layer_decay_rate and the depths come from the backbone's get_layer_depth)")
        else:
            close = difflib.get_close_matches(key, PARAMWISE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
        raise ValueError(f"paramwise_cfg key '{key}' is not read by "
                         f'LayerDecayOptimWrapperConstructor{hint}; it reads '
                         f'{", ".join(PARAMWISE_KEYS)}')


def check_custom_keys_match(custom_keys: dict, param_names, model_name: str) -> None:
    """Refuse a custom key that matches no parameter name, as mmengine matches them: a
    substring of ``module_prefix.param_name`` (``.name`` for the model's own parameters)."""
    matched_names = [name if '.' in name else '.' + name for name in param_names]
    for key in custom_keys:
        if not any(key in name for name in matched_names):
            raise ValueError(f"paramwise_cfg.custom_keys['{key}'] matches no parameter name of "
                             f'{model_name}')
