"""Layer-wise lr decay: CvT.get_layer_depth, mmpretrain's constructor on the classifier, and
cvt_mm's LayerDecayOptimWrapperConstructor on the classifier, Mask R-CNN and UperNet.

The expected lrs come from the formula ``lr * rate ** (num_layers - depth - 1)`` with the
depths CvT.get_layer_depth documents (17 for CvT-13: stage-0 embedding 0, last block 15, norms
of the outputs and everything outside the backbone 16), written out by hand here.
"""
from pathlib import Path

import pytest
import torch.nn as nn
from helpers import LogCapture, build_model, load_repo_config, toy_config
from mmengine.optim import build_optim_wrapper
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import MODELS as CLASSIFIERS

import cvt_mm  # noqa: F401  (registers CvT and the constructor)
from cvt_mm.apis import classifier_cfg
from cvt_mm.engine import register_task_modules
from cvt_mm.engine.optimizers import LayerDecayOptimWrapperConstructor, layer_depth_fn
from cvt_mm.models import CvT
from cvt_mm.testing import FAST_TEST_ARCH

CVT13_NUM_LAYERS = 17
STAGE0_PARAM = 'backbone.stages.0.patch_embed.proj.weight'  # depth 0
LAST_BLOCK_PARAM = 'backbone.stages.2.blocks.9.mlp.fc1.weight'  # depth 15
NO_DECAY_PARAMS = ('backbone.stages.2.cls_token', 'backbone.stages.2.blocks.9.norm1.weight',
                   'backbone.stages.0.patch_embed.norm.bias',
                   'backbone.stages.1.blocks.1.attn.conv_proj_k.bn.weight')


def expected_lr(lr, rate, depth, num_layers=CVT13_NUM_LAYERS):
    return lr * rate ** (num_layers - depth - 1)


def settings_by_name(model, optimizer):
    """name -> (lr, weight_decay); each parameter must be in exactly one group."""
    by_id = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in by_id, 'a parameter is in two groups'
            by_id[id(param)] = (group['lr'], group['weight_decay'])
    named = dict(model.named_parameters())
    assert set(by_id) == {id(param) for param in named.values()}
    return {name: by_id[id(param)] for name, param in named.items()}


# ----------------------------------------------------------------------------- depths
def test_cvt13_depths_follow_the_tokens_through_the_network():
    backbone = CvT('13', out_type='featmap', out_indices=(0, 1, 2))
    depth = {name: backbone.get_layer_depth('backbone.' + name, 'backbone.')
             for name, _ in backbone.named_parameters()}
    assert {num for _, num in depth.values()} == {CVT13_NUM_LAYERS}
    assert depth['stages.0.patch_embed.proj.weight'][0] == 0
    assert depth['stages.0.blocks.0.attn.proj_q.weight'][0] == 1
    assert depth['stages.1.patch_embed.norm.bias'][0] == 2
    assert depth['stages.1.blocks.1.attn.conv_proj_v.bn.weight'][0] == 4
    assert depth['stages.2.cls_token'][0] == depth['stages.2.patch_embed.proj.bias'][0] == 5
    assert depth['stages.2.blocks.0.norm1.weight'][0] == 6
    assert depth['stages.2.blocks.9.mlp.fc2.bias'][0] == 15
    assert depth['out_norm0.weight'][0] == depth['out_norm2.bias'][0] == 16
    # Every block has a depth of its own, and depths never decrease along the network.
    stage_depths = [depth[name][0] for name in depth if name.startswith('stages.')]
    assert stage_depths == sorted(stage_depths)
    block_depths = {depth[name][0] for name in depth if '.blocks.' in name}
    assert len(block_depths) == 13
    # A name outside the prefix (neck, head) is at the last depth.
    assert backbone.get_layer_depth('neck.fpn_convs.0.conv.weight', 'backbone.') == (16, 17)


def test_tiny_arch_counts_its_own_depths():
    backbone = CvT(FAST_TEST_ARCH)  # depths [1, 2, 3]: 6 blocks, 3 embeddings, 1 for the rest
    assert backbone.get_layer_depth('stages.2.blocks.2.norm2.weight') == (8, 10)
    assert backbone.get_layer_depth('cls_norm.weight') == (9, 10)


# ----------------------------------------------------------------------------- classifier
CLASSIFIER_PARAMWISE = dict(norm_decay_mult=0., bias_decay_mult=0.,
                            custom_keys={'cls_token': dict(decay_mult=0.)})


@pytest.mark.parametrize('constructor', [LearningRateDecayOptimWrapperConstructor,
                                         LayerDecayOptimWrapperConstructor],
                         ids=['mmpretrain', 'cvt_mm'])
def test_constructors_decay_the_classifier_by_depth(constructor):
    register_task_modules('mmpretrain')
    model = CLASSIFIERS.build(classifier_cfg('13', 10))
    lr, rate, weight_decay = 2.5e-4, 0.75, 0.05
    optim_wrapper = constructor(
        dict(optimizer=dict(type='AdamW', lr=lr, weight_decay=weight_decay)),
        dict(layer_decay_rate=rate, **CLASSIFIER_PARAMWISE))(model)
    settings = settings_by_name(model, optim_wrapper.optimizer)

    assert settings[STAGE0_PARAM] == (pytest.approx(expected_lr(lr, rate, 0)), weight_decay)
    assert settings[LAST_BLOCK_PARAM] == (pytest.approx(expected_lr(lr, rate, 15)),
                                          weight_decay)
    assert settings['head.fc.weight'] == (pytest.approx(lr), weight_decay)
    assert settings['backbone.cls_norm.weight'] == (pytest.approx(lr), 0)
    assert settings['head.fc.bias'][1] == 0
    for name in NO_DECAY_PARAMS:
        assert settings[name][1] == 0, name


def test_cvt_mm_constructor_agrees_with_mmpretrain_on_the_classifier():
    register_task_modules('mmpretrain')
    model = CLASSIFIERS.build(classifier_cfg(FAST_TEST_ARCH, 5))
    optim_cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    paramwise = dict(layer_decay_rate=0.65, **CLASSIFIER_PARAMWISE)
    ours = LayerDecayOptimWrapperConstructor(optim_cfg, paramwise)(model)
    theirs = LearningRateDecayOptimWrapperConstructor(optim_cfg, paramwise)(model)
    our_settings = settings_by_name(model, ours.optimizer)
    their_settings = settings_by_name(model, theirs.optimizer)
    assert our_settings.keys() == their_settings.keys()
    for name, (lr, decay) in their_settings.items():
        assert our_settings[name] == (pytest.approx(lr), decay), name
    # Ours merges equal settings into groups; mmpretrain keeps one group per tensor.
    assert len(ours.optimizer.param_groups) < len(theirs.optimizer.param_groups)


# ----------------------------------------------------------------------------- simplest form
TINY_NUM_LAYERS = 10  # FAST_TEST_ARCH: 3 embeddings, 6 blocks, 1 for the rest
MINIMAL_OPTIM_WRAPPER = dict(constructor='LayerDecayOptimWrapperConstructor',
                             paramwise_cfg=dict(layer_decay_rate=0.5),
                             optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))


def tiny_task_model(task):
    """The classifier, Mask R-CNN or UperNet with the tiny CvT and the real heads."""
    if task == 'classifier':
        register_task_modules('mmpretrain')
        return CLASSIFIERS.build(classifier_cfg(FAST_TEST_ARCH, 5)), 'head.fc.weight'
    config_name, head_param = {
        'maskrcnn': ('cvt13_maskrcnn_coco.py', 'roi_head.bbox_head.fc_cls.weight'),
        'upernet': ('cvt13_upernet_ade20k.py', 'decode_head.conv_seg.weight')}[task]
    cfg = toy_config(load_repo_config(config_name), Path('unused'))
    return build_model(cfg), head_param


@pytest.mark.parametrize('task', ['classifier', 'maskrcnn', 'upernet'])
def test_layer_decay_rate_alone_decays_every_task(task):
    """paramwise_cfg=dict(layer_decay_rate=...) with nothing else: one lr per depth, the
    optimizer's weight decay everywhere."""
    model, head_param = tiny_task_model(task)
    optim_wrapper = build_optim_wrapper(model, MINIMAL_OPTIM_WRAPPER)
    settings = settings_by_name(model, optim_wrapper.optimizer)

    lr, rate = 1e-3, 0.5
    assert settings[STAGE0_PARAM][0] == pytest.approx(expected_lr(lr, rate, 0, TINY_NUM_LAYERS))
    assert settings['backbone.stages.2.blocks.2.mlp.fc1.weight'][0] == pytest.approx(
        expected_lr(lr, rate, 8, TINY_NUM_LAYERS))
    assert settings[head_param][0] == pytest.approx(lr)
    assert len({round(group_lr / lr, 9) for group_lr, _ in settings.values()}) == TINY_NUM_LAYERS
    assert {decay for _, decay in settings.values()} == {0.05}


def tiny_classifier():
    register_task_modules('mmpretrain')
    return CLASSIFIERS.build(classifier_cfg(FAST_TEST_ARCH, 5))


def build_tiny(paramwise_cfg, model=None, optimizer=dict(type='AdamW', lr=1e-3,
                                                         weight_decay=0.05)):
    model = tiny_classifier() if model is None else model
    optim_wrapper = LayerDecayOptimWrapperConstructor(dict(optimizer=optimizer),
                                                      dict(layer_decay_rate=0.5,
                                                           **paramwise_cfg))(model)
    return settings_by_name(model, optim_wrapper.optimizer)


DWCONV_PARAM = 'backbone.stages.1.blocks.0.attn.conv_proj_k.conv.weight'


def test_mmengine_paramwise_options_apply_under_the_decay():
    lr, stage0_lr = 1e-3, expected_lr(1e-3, 0.5, 0, TINY_NUM_LAYERS)
    settings = build_tiny(dict(dwconv_decay_mult=0., flat_decay_mult=0.5, bias_lr_mult=2.,
                               custom_keys={'head.fc': dict(lr_mult=10.)}))
    assert settings[DWCONV_PARAM][1] == 0
    assert settings['backbone.stages.2.blocks.2.norm1.weight'][1] == pytest.approx(0.025)
    assert settings['backbone.stages.0.patch_embed.proj.bias'] == (
        pytest.approx(2 * stage0_lr), pytest.approx(0.025))
    assert settings[STAGE0_PARAM] == (pytest.approx(stage0_lr), 0.05)
    assert settings['head.fc.weight'][0] == pytest.approx(10 * lr)


def test_bypass_duplicate_puts_a_shared_parameter_in_one_group():
    model = tiny_classifier()
    model.head.shared = model.backbone.stages[0].patch_embed  # one module in two places
    settings = build_tiny(dict(bypass_duplicate=True), model)  # each parameter in one group
    assert settings[STAGE0_PARAM][0] == pytest.approx(expected_lr(1e-3, 0.5, 0,
                                                                  TINY_NUM_LAYERS))


@pytest.mark.parametrize('paramwise_cfg, optimizer, message', [
    (dict(norm_decay_mul=0.), None, "'norm_decay_mul' is not read.*did you mean "
                                    "'norm_decay_mult'"),
    (dict(decay_rate=0.9, decay_type='layer_wise'), None, "'decay_rate' is not read.*mmdet"),
    (dict(custom_keys={'cls_tokens': dict(decay_mult=0.)}), None,
     r"custom_keys\['cls_tokens'\] matches no parameter name of ImageClassifier"),
    (dict(custom_keys={'cls_token': dict(decay_mul=0.)}), None,
     r"custom_keys\['cls_token'\].decay_mul is read neither.*AdamW"),
    (dict(flat_decay_mult=0.), dict(type='AdamW', lr=1e-3),
     'flat_decay_mult needs optimizer.weight_decay'),
], ids=['misspelt', 'mmdet_keys', 'unmatched_custom_key', 'unread_custom_option',
        'flat_without_weight_decay'])
def test_paramwise_settings_nothing_would_read_are_refused(paramwise_cfg, optimizer, message):
    optimizer = optimizer or dict(type='AdamW', lr=1e-3, weight_decay=0.05)
    with pytest.raises(ValueError, match=message):
        build_tiny(paramwise_cfg, optimizer=optimizer)


# ----------------------------------------------------------------------------- dense models
@pytest.mark.parametrize('config_name, lr, weight_decay, head_param', [
    ('cvt13_maskrcnn-layerdecay_coco.py', 1e-4, 0.05, 'roi_head.bbox_head.fc_cls.weight'),
    ('cvt13_upernet-layerdecay_ade20k.py', 6e-5, 0.01, 'decode_head.conv_seg.weight'),
])
def test_layer_decay_configs_decay_the_backbone_only(config_name, lr, weight_decay,
                                                    head_param):
    cfg = load_repo_config(config_name)  # the config's own scope (mmdet or mmseg)
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    assert rate == 0.9
    model = build_model(cfg)  # the real CvT-13
    with LogCapture() as log:
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    settings = settings_by_name(model, optim_wrapper.optimizer)

    assert settings[STAGE0_PARAM] == (pytest.approx(expected_lr(lr, rate, 0)), weight_decay)
    assert settings[LAST_BLOCK_PARAM] == (pytest.approx(expected_lr(lr, rate, 15)),
                                          weight_decay)
    assert settings[head_param] == (pytest.approx(lr), weight_decay)
    neck_or_aux = ('neck.fpn_convs.0.conv.weight' if 'neck.fpn_convs.0.conv.weight' in settings
                   else 'auxiliary_head.conv_seg.weight')
    assert settings[neck_or_aux] == (pytest.approx(lr), weight_decay)
    assert settings['backbone.out_norm0.weight'] == (pytest.approx(lr), 0)
    for name in NO_DECAY_PARAMS:
        assert settings[name][1] == 0, name
    # Only the backbone is decayed: every lr below the base one belongs to it.
    assert all(name.startswith('backbone.') for name, (group_lr, _) in settings.items()
               if group_lr < lr * (1 - 1e-9))
    summary = next(message for message in log.messages
                   if message.startswith('layer-wise lr decay'))
    assert 'depth 0: lr=' in summary and 'depth 16: lr=' in summary


def test_model_without_layer_depths_is_refused():
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        layer_depth_fn(model)
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(dict(optimizer=dict(type='SGD', lr=0.1)),
                                          dict(layer_decay_rate=1.5))
