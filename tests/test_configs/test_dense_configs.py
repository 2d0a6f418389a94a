"""The Mask R-CNN and UperNet configs: they build, train and validate, and load classifiers.

The real configs are used as written. Runs on toy data (cvt_mm.toy.shapes, COCO and
ADE20K layouts) swap in a tiny CvT and scale every pipeline size down so that an iteration
takes seconds on a CPU; the real CvT-13 Mask R-CNN runs once at a small image size.
"""
import math

import pytest
import torch
from helpers import (
    CONFIG_DIR,
    TOY_IMAGE_SIZE,
    LogCapture,
    build_model,
    load_repo_config,
    make_toy_datasets,
    task_registry,
    toy_config,
)
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from cvt_mm.apis import classifier_cfg
from cvt_mm.engine import register_task_modules, task_scope
from cvt_mm.models import CvT
from cvt_mm.testing import FAST_TEST_ARCH, randomize_norms

DETECTION_CONFIGS = ('cvt13_maskrcnn_coco.py', 'cvt13_maskrcnn-3x_coco.py',
                     'cvt21_maskrcnn_coco.py', 'cvt13_maskrcnn-layerdecay_coco.py',
                     'cvt13_cascade-mask-rcnn-3x_coco.py', 'cvt13_retinanet_coco.py',
                     'cvt13_maskrcnn-fast_coco.py')
SEGMENTATION_CONFIGS = ('cvt13_upernet_ade20k.py', 'cvt21_upernet_ade20k.py',
                        'cvt13_upernet-layerdecay_ade20k.py', 'cvt13_upernet-fast_ade20k.py')
# What each config must say: (arch, drop path, checkpoint the converter writes).
EXPECTED_BACKBONES = {
    'cvt13_maskrcnn_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_maskrcnn-3x_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt21_maskrcnn_coco.py': ('21', 0.2, 'checkpoints/cvt21_in1k.pth'),
    'cvt13_upernet_ade20k.py': ('13', 0.3, 'checkpoints/cvt13_in1k.pth'),
    'cvt21_upernet_ade20k.py': ('21', 0.3, 'checkpoints/cvt21_in1k.pth'),
    'cvt13_maskrcnn-layerdecay_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_cascade-mask-rcnn-3x_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_retinanet_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_upernet-layerdecay_ade20k.py': ('13', 0.3, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_maskrcnn-fast_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_upernet-fast_ade20k.py': ('13', 0.3, 'checkpoints/cvt13_in1k.pth'),
}
# The stages each config outputs where not all three: RetinaNet's FPN starts at stride 8.
OUT_INDICES = {'cvt13_retinanet_coco.py': [1, 2]}
# Every detection and segmentation config, the user recipes over them included.
DENSE_CONFIGS = sorted(str(path.relative_to(CONFIG_DIR))
                       for pattern in ('*_coco.py', '*_ade20k.py', 'examples/*.py')
                       for path in CONFIG_DIR.glob(pattern))
FPN_STRIDES = (4, 8, 16, 32, 64)  # mmdet's Mask R-CNN levels
RETINANET_STRIDES = (8, 16, 32, 64, 128)  # mmdet's RetinaNet levels


@pytest.fixture(scope='module')
def toy_data_root(tmp_path_factory):
    return make_toy_datasets(tmp_path_factory.mktemp('toy_data'))


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """One intra-op thread for this module: the small inputs gain nothing from more, and
    OpenMP threads competing with other jobs for the cores slow them down several times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- full configs
@pytest.mark.parametrize('config_name', DETECTION_CONFIGS + SEGMENTATION_CONFIGS)
def test_config_builds_full_model_and_pipelines(config_name):
    cfg = load_repo_config(config_name)
    arch, drop_path_rate, checkpoint = EXPECTED_BACKBONES[config_name]
    model = build_model(cfg)

    backbone = model.backbone
    assert type(backbone).__name__ == 'CvT'
    assert backbone.arch_settings['depths'] == {'13': [1, 2, 10], '21': [1, 4, 16]}[arch]
    out_indices = OUT_INDICES.get(config_name, [0, 1, 2])
    assert backbone.out_type == 'featmap' and backbone.out_indices == out_indices
    last_block = backbone.stages[-1].blocks[-1]
    assert last_block.drop_path_rate == pytest.approx(drop_path_rate)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint,
                                               prefix='backbone.')
    widths = backbone.embed_dims
    if task_scope(cfg) == 'mmdet':
        assert cfg.model.neck.in_channels == [widths[i] for i in out_indices]
        box_heads = model.roi_head.bbox_head if hasattr(model, 'roi_head') else model.bbox_head
        if not isinstance(box_heads, torch.nn.ModuleList):  # one head, not a cascade's three
            box_heads = [box_heads]
        assert [head.num_classes for head in box_heads] == [80] * len(box_heads)
        assert cfg.optim_wrapper.optimizer.lr == 1e-4
    else:
        assert model.decode_head.in_channels == widths
        assert model.decode_head.in_index == [0, 1, 2]
        assert model.auxiliary_head.in_channels == widths[model.auxiliary_head.in_index]
        assert model.decode_head.num_classes == 150
        assert cfg.train_cfg.max_iters == 160000
        assert tuple(cfg.model.data_preprocessor.size) == (512, 512)

    for loader in ('train_dataloader', 'val_dataloader'):
        pipeline = Compose(cfg[loader].dataset.pipeline)
        assert len(pipeline.transforms) == len(cfg[loader].dataset.pipeline)


@pytest.mark.parametrize('config_name', DENSE_CONFIGS)
def test_layers_reading_the_backbone_take_its_stage_widths(config_name):
    """The neck (or, without one, the decode heads) takes the widths of the stages the backbone
    outputs, as the config's arch has them: changing the arch without the widths fails here."""
    model = load_repo_config(config_name).model
    widths = CvT.arch_zoo[model.backbone.arch]['embed_dims']
    outputs = [widths[stage] for stage in model.backbone.out_indices]
    if 'neck' in model:  # FPN, ChannelMapper; the heads read the neck's levels
        assert model.neck.in_channels == outputs
    else:  # UperNet: the heads pick backbone outputs by in_index
        for head in (model.decode_head, model.auxiliary_head):
            index = head.in_index
            expected = ([outputs[i] for i in index] if isinstance(index, (list, tuple))
                        else outputs[index])
            assert head.in_channels == expected, head.type


def test_dense_base_widths_are_those_of_its_arch():
    base = Config.fromfile(CONFIG_DIR / '_base_' / 'models' / 'cvt13_dense.py')
    arch = base.cvt_dense_backbone.arch
    assert base.cvt_stage_widths == CvT.arch_zoo[arch]['embed_dims']


def test_detection_schedules():
    one_x = load_repo_config('cvt13_maskrcnn_coco.py')
    three_x = load_repo_config('cvt13_maskrcnn-3x_coco.py')
    assert one_x.train_cfg.max_epochs == 12
    assert one_x.param_scheduler[1].milestones == [8, 11]
    assert three_x.train_cfg.max_epochs == 36
    assert three_x.param_scheduler[1].milestones == [27, 33]
    # The 3x variant changes the augmentation, not the model or the optimizer.
    assert three_x.model == one_x.model
    assert three_x.optim_wrapper == one_x.optim_wrapper
    assert [t.type for t in three_x.train_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'RandomChoice', 'PackDetInputs']


def test_cascade_and_retinanet_share_the_mask_rcnn_backbone_and_optimizer():
    mask_rcnn = load_repo_config('cvt13_maskrcnn_coco.py')
    three_x = load_repo_config('cvt13_maskrcnn-3x_coco.py')
    cascade = load_repo_config('cvt13_cascade-mask-rcnn-3x_coco.py')
    retinanet = load_repo_config('cvt13_retinanet_coco.py')
    assert cascade.model.backbone == mask_rcnn.model.backbone
    assert cascade.model.neck == mask_rcnn.model.neck
    assert cascade.optim_wrapper == retinanet.optim_wrapper == mask_rcnn.optim_wrapper
    # Cascade 3x: the 3x augmentation and schedule; three 4conv1fc GIoU stages.
    assert cascade.train_dataloader.dataset.pipeline == three_x.train_dataloader.dataset.pipeline
    assert cascade.train_cfg.max_epochs == 36
    assert cascade.param_scheduler == three_x.param_scheduler
    heads = cascade.model.roi_head.bbox_head
    assert [head.type for head in heads] == ['ConvFCBBoxHead'] * 3
    assert {head.loss_bbox.type for head in heads} == {'GIoULoss'}
    assert [stage.assigner.pos_iou_thr for stage in cascade.model.train_cfg.rcnn] == [
        0.5, 0.6, 0.7]
    # RetinaNet 1x: the Mask R-CNN backbone but for its outputs; boxes only.
    backbone = dict(retinanet.model.backbone, out_indices=mask_rcnn.model.backbone.out_indices)
    assert backbone == mask_rcnn.model.backbone
    assert retinanet.train_cfg.max_epochs == 12
    assert retinanet.param_scheduler == mask_rcnn.param_scheduler
    assert retinanet.val_evaluator.metric == 'bbox'


def test_retinanet_fpn_gives_strides_8_to_128():
    cfg = load_repo_config('cvt13_retinanet_coco.py')
    model = build_model(cfg).eval()  # the real CvT-13
    height, width = 256, 384  # multiples of the coarsest stride, 128
    with torch.no_grad():
        levels = model.extract_feat(torch.randn(1, 3, height, width))
    assert [tuple(level.shape[2:]) for level in levels] == [
        (height // stride, width // stride) for stride in RETINANET_STRIDES]
    anchor_strides = [stride[0] for stride in model.bbox_head.prior_generator.strides]
    assert anchor_strides == list(RETINANET_STRIDES)
    # Every backbone output feeds FPN: no parameter without a gradient under DDP.
    assert not hasattr(model.backbone, 'out_norm0')


@pytest.mark.parametrize('config_name, lr, weight_decay', [
    ('cvt13_maskrcnn_coco.py', 1e-4, 0.05),
    ('cvt13_upernet_ade20k.py', 6e-5, 0.01),
    ('cvt13_cascade-mask-rcnn-3x_coco.py', 1e-4, 0.05),
    ('cvt13_retinanet_coco.py', 1e-4, 0.05),
])
def test_no_weight_decay_on_norms_and_cls_token(config_name, lr, weight_decay):
    cfg = load_repo_config(config_name)
    model = build_model(cfg)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert type(optimizer).__name__ == 'AdamW'
    decay_of = {}
    for group in optimizer.param_groups:
        assert group['lr'] == pytest.approx(lr)
        for param in group['params']:
            decay_of[id(param)] = group['weight_decay']
    params = dict(model.named_parameters())
    assert len(decay_of) == len(params)  # every parameter is optimised once

    def decay(name):
        return decay_of[id(params[name])]

    block = 'backbone.stages.2.blocks.0'
    for no_decay in ('backbone.stages.2.cls_token', f'{block}.norm1.weight',
                     f'{block}.norm2.bias', f'{block}.attn.conv_proj_k.bn.weight',
                     'backbone.stages.0.patch_embed.norm.weight', 'backbone.out_norm2.weight'):
        assert decay(no_decay) == 0, no_decay
    for with_decay in (f'{block}.attn.proj_q.weight', f'{block}.mlp.fc1.weight',
                       f'{block}.attn.conv_proj_k.conv.weight',
                       'backbone.stages.0.patch_embed.proj.weight'):
        assert decay(with_decay) == pytest.approx(weight_decay), with_decay


def test_fpn_gives_mmdet_default_strides_from_three_stages():
    cfg = load_repo_config('cvt13_maskrcnn_coco.py')
    model = build_model(cfg).eval()  # the real CvT-13
    height, width = 256, 192  # both multiples of the coarsest stride, 64
    with torch.no_grad():
        levels = model.extract_feat(torch.randn(1, 3, height, width))

    assert [tuple(level.shape[2:]) for level in levels] == [
        (height // stride, width // stride) for stride in FPN_STRIDES]
    assert all(level.shape[1] == 256 for level in levels)
    # The heads are configured for exactly these levels.
    anchor_strides = [stride[0] for stride in model.rpn_head.prior_generator.strides]
    assert anchor_strides == list(FPN_STRIDES)
    assert model.roi_head.bbox_roi_extractor.featmap_strides == list(FPN_STRIDES[:4])
    assert model.roi_head.mask_roi_extractor.featmap_strides == list(FPN_STRIDES[:4])


def test_full_cvt13_maskrcnn_trains_and_predicts_on_small_images(toy_data_root):
    cfg = toy_config(load_repo_config('cvt13_maskrcnn_coco.py'), toy_data_root, arch=None)
    model = build_model(cfg)
    assert sum(len(stage.blocks) for stage in model.backbone.stages) == 13  # the real one
    dataset = task_registry(cfg, 'DATASETS').build(cfg.train_dataloader.dataset)
    batch = model.data_preprocessor(
        dict(inputs=[dataset[i]['inputs'] for i in range(2)],
             data_samples=[dataset[i]['data_samples'] for i in range(2)]), training=True)
    assert max(batch['inputs'].shape[2:]) <= 2 * TOY_IMAGE_SIZE

    model.train()
    losses = model(**batch, mode='loss')
    total, _ = model.parse_losses(losses)  # the sum the Runner optimises
    assert torch.isfinite(total)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    total.backward()
    assert model.backbone.stages[0].patch_embed.proj.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        predictions = model(batch['inputs'][:1], batch['data_samples'][:1], mode='predict')
    instances = predictions[0].pred_instances
    assert instances.masks.shape[1:] == tuple(predictions[0].ori_shape)
    assert len(instances.bboxes) == len(instances.scores) == len(instances.labels)


# ----------------------------------------------------------------------------- toy runs
@pytest.mark.parametrize('config_name', DETECTION_CONFIGS + SEGMENTATION_CONFIGS)
def test_one_training_iteration_and_validation_on_toy_data(config_name, toy_data_root,
                                                           tmp_path):
    cfg = toy_config(load_repo_config(config_name), toy_data_root)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()

    assert runner.iter == 1
    scalars = runner.message_hub.log_scalars
    assert math.isfinite(scalars['train/loss'].current())
    if 'retinanet' in config_name:
        assert 'train/loss_cls' in scalars and 'train/loss_bbox' in scalars
        validation_metrics = ('val/coco/bbox_mAP', )
    elif 'cascade' in config_name:
        assert {'train/s0.loss_bbox', 'train/s2.loss_bbox', 'train/s2.loss_mask'} <= set(scalars)
        validation_metrics = ('val/coco/bbox_mAP', 'val/coco/segm_mAP')
    elif task_scope(cfg) == 'mmdet':
        assert 'train/loss_mask' in scalars
        validation_metrics = ('val/coco/bbox_mAP', 'val/coco/segm_mAP')
    else:
        assert 'train/aux.loss_ce' in scalars
        validation_metrics = ('val/mIoU', )
    for metric in validation_metrics:
        assert 0 <= scalars[metric].current() <= 100, metric


# ----------------------------------------------------------------------------- pretraining
@pytest.mark.parametrize('config_name', ['cvt13_maskrcnn_coco.py', 'cvt13_upernet_ade20k.py'])
def test_classification_checkpoint_initialises_dense_backbone(config_name, toy_data_root,
                                                               tmp_path):
    register_task_modules('mmpretrain')
    from mmpretrain.registry import MODELS as CLASSIFIERS
    classifier = randomize_norms(CLASSIFIERS.build(classifier_cfg(FAST_TEST_ARCH, 10)))
    for stage in classifier.backbone.stages:
        if stage.cls_token is not None:
            torch.nn.init.normal_(stage.cls_token)  # not the zeros it starts as
    checkpoint = tmp_path / 'classifier.pth'
    torch.save({'state_dict': classifier.state_dict()}, checkpoint)

    cfg = toy_config(load_repo_config(config_name), toy_data_root)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint),
                                       prefix='backbone.')
    model = build_model(cfg)
    with LogCapture() as log:
        model.init_weights()

    loaded = model.backbone.state_dict()
    source = {name[len('backbone.'):]: tensor
              for name, tensor in classifier.state_dict().items()
              if name.startswith('backbone.')}
    dense_only = {f'out_norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}
    classification_only = {'cls_norm.weight', 'cls_norm.bias'}
    assert set(loaded) == set(source) - classification_only | dense_only
    for name, tensor in source.items():
        if name not in classification_only:
            assert torch.equal(loaded[name], tensor), name

    mismatch_reports = [message for message in log.messages
                        if 'do not match exactly' in message]
    assert len(mismatch_reports) == 1, log.messages
    assert 'unexpected key' not in mismatch_reports[0]
    missing_line = next(line for line in mismatch_reports[0].splitlines()
                        if line.startswith('missing keys in source state_dict: '))
    missing = set(missing_line.split(': ', 1)[1].split(', '))
    assert missing == dense_only
