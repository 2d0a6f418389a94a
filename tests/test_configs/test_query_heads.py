"""The query-based heads' configs: Mask2Former (COCO instances, ADE20K) and DINO (COCO boxes).

Their real models build with the levels the heads expect (the neck supplies the ones CvT's
three stages lack), their optimizers follow the anchors' recipes, and each config made small
(tiny CvT, small images) trains, is evaluated with its library's metric, and is taken by
tools/test.py and by the library's inferencer.
"""
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from helpers import TOOLS_DIR, build_model, load_repo_config, make_toy_datasets, toy_config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from cvt_mm.engine import task_scope

MASK2FORMER = ('cvt13_mask2former_coco.py', 'cvt13_mask2former_ade20k.py')
DINO = 'cvt13_dino_coco.py'
# The levels each head reads, and the neck's parameters that make them (docs).
STRIDES = {'cvt13_mask2former_coco.py': (4, 8, 16, 32),
           'cvt13_mask2former_ade20k.py': (4, 8, 16, 32), DINO: (8, 16, 32, 64)}
NECK_PARAMETERS = {'cvt13_mask2former_coco.py': 1_050_624,
                   'cvt13_mask2former_ade20k.py': 1_050_624, DINO: 1_624_064}
METRICS = {'cvt13_mask2former_coco.py': ('coco/bbox_mAP', 'coco/segm_mAP'),
           'cvt13_mask2former_ade20k.py': ('mIoU', ), DINO: ('coco/bbox_mAP', )}


@pytest.fixture(scope='module')
def toy_data_root(tmp_path_factory):
    return make_toy_datasets(tmp_path_factory.mktemp('toy_data'))


@pytest.mark.parametrize('config_name', list(STRIDES))
def test_the_neck_supplies_the_levels_the_head_reads(config_name):
    cfg = load_repo_config(config_name)
    assert cfg.model.backbone.type == 'CvT' and cfg.model.backbone.arch == '13'
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='checkpoints/cvt13_in1k.pth', prefix='backbone.')
    model = build_model(cfg).eval()  # the real CvT-13
    height, width = 128, 192  # multiples of the coarsest stride, 64
    with torch.no_grad():
        levels = model.extract_feat(torch.randn(1, 3, height, width))
    assert [tuple(level.shape[1:]) for level in levels] == [
        (256, height // stride, width // stride) for stride in STRIDES[config_name]]
    assert sum(p.numel() for p in model.neck.parameters()) == NECK_PARAMETERS[config_name]
    if config_name == DINO:
        assert model.encoder.layers[0].self_attn.num_levels == 4
    else:
        head = model.panoptic_head if task_scope(cfg) == 'mmdet' else model.decode_head
        assert head.pixel_decoder.strides == [4, 8, 16, 32]
        assert head.pixel_decoder.num_encoder_levels == 3  # strides 8, 16, 32, as for Swin-T


def test_the_two_mask2formers_share_backbone_neck_and_optimizer():
    coco, ade = (load_repo_config(name) for name in MASK2FORMER)
    assert coco.model.backbone == ade.model.backbone
    assert coco.model.backbone.drop_path_rate == 0.3  # Swin-T's Mask2Former recipes
    assert dict(coco.model.neck, type='mmdet.ChannelMapper') == ade.model.neck
    assert coco.optim_wrapper.optimizer == ade.optim_wrapper.optimizer
    assert coco.optim_wrapper.clip_grad == ade.optim_wrapper.clip_grad == dict(
        max_norm=0.01, norm_type=2)
    # Schedules as the anchors': 368,750 iterations (50 epochs), 160k.
    assert coco.train_cfg.max_iters == 368750 and ade.train_cfg.max_iters == 160000
    assert coco.train_dataloader.batch_size == ade.train_dataloader.batch_size == 2


@pytest.mark.parametrize('config_name, weight_decay, no_decay_in_backbone', [
    (MASK2FORMER[0], 0.05, True), (MASK2FORMER[1], 0.05, True), (DINO, 1e-4, False)])
def test_backbone_at_a_tenth_of_the_lr(config_name, weight_decay, no_decay_in_backbone):
    cfg = load_repo_config(config_name)
    model = build_model(cfg)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    setting = {id(param): (group['lr'], group['weight_decay'])
               for group in groups for param in group['params']}
    params = dict(model.named_parameters())
    assert len(setting) == len(params)
    block = 'backbone.stages.2.blocks.9'
    assert setting[id(params[f'{block}.mlp.fc1.weight'])] == pytest.approx((1e-5, weight_decay))
    head_weight = next(name for name in params if 'head' in name and name.endswith('weight')
                       and params[name].dim() > 1)
    assert setting[id(params[head_weight])] == pytest.approx((1e-4, weight_decay))
    for name in ('backbone.stages.2.cls_token', f'{block}.norm1.weight',
                 f'{block}.attn.conv_proj_v.bn.bias', 'backbone.stages.0.patch_embed.norm.weight'):
        expected = 0.0 if no_decay_in_backbone else weight_decay
        assert setting[id(params[name])] == pytest.approx((1e-5, expected)), name
    if no_decay_in_backbone:  # Mask2Former's query and level embeddings
        for name in params:
            if re.search(r'(query_embed|query_feat|level_embed)\.weight$', name):
                assert setting[id(params[name])] == pytest.approx((1e-4, 0.0)), name


@pytest.mark.parametrize('config_name', list(STRIDES))
def test_toy_run_trains_evaluates_and_is_taken_by_test_and_the_inferencer(
        config_name, toy_data_root, tmp_path):
    cfg = toy_config(load_repo_config(config_name), toy_data_root)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    scalars = runner.message_hub.log_scalars
    assert runner.iter == 1 and np.isfinite(scalars['train/loss'].current())
    for metric in METRICS[config_name]:
        assert 0 <= scalars[f'val/{metric}'].current() <= 100, metric
    checkpoint = next((tmp_path / 'work').glob('*_1.pth'))

    config = tmp_path / 'toy_config.py'
    cfg.dump(config)
    test = subprocess.run([sys.executable, str(TOOLS_DIR / 'test.py'), str(config),
                           str(checkpoint), '--work-dir', str(tmp_path / 'test')],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    for metric in METRICS[config_name]:
        assert re.search(rf'^{re.escape(metric)}: \d', test.stdout + test.stderr, re.M), metric

    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    if task_scope(cfg) == 'mmdet':
        from mmdet.apis import DetInferencer
        result = DetInferencer(model=str(config), weights=str(checkpoint), device='cpu')(
            image, return_datasamples=True)
        instances = result['predictions'][0].pred_instances
        assert len(instances.scores) == len(instances.bboxes) <= 10
        assert ('masks' in instances) == (config_name != DINO)
    else:
        from mmseg.apis import MMSegInferencer
        result = MMSegInferencer(model=str(config), weights=str(checkpoint), device='cpu')(
            mmcv.rgb2bgr(image), return_datasamples=True)
        assert result.pred_sem_seg.data.shape == (1, 96, 128)
