"""The Mask R-CNN and UperNet configs: they build, train and validate, and load classifiers.

The real configs are used as written. Runs on toy data (tools/make_toy_data.py, COCO and
ADE20K layouts) swap in a tiny CvT and scale every pipeline size down so that an iteration
takes seconds on a CPU; the real CvT-13 Mask R-CNN runs once at a small image size.

test_tools.py reuses the toy-data helpers below.
"""
import copy
import importlib
import importlib.util
import logging
import math
import uuid
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH, randomize_norms
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from cvt_mm.models.classifier import cvt_classifier_cfg
from cvt_mm.tools_common import register_task_modules, task_scope

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'configs'
DETECTION_CONFIGS = ('cvt13_maskrcnn_coco.py', 'cvt13_maskrcnn-3x_coco.py',
                     'cvt21_maskrcnn_coco.py')
SEGMENTATION_CONFIGS = ('cvt13_upernet_ade20k.py', 'cvt21_upernet_ade20k.py')
# What each config must say: (arch, drop path, checkpoint the converter writes).
EXPECTED_BACKBONES = {
    'cvt13_maskrcnn_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt13_maskrcnn-3x_coco.py': ('13', 0.2, 'checkpoints/cvt13_in1k.pth'),
    'cvt21_maskrcnn_coco.py': ('21', 0.2, 'checkpoints/cvt21_in1k.pth'),
    'cvt13_upernet_ade20k.py': ('13', 0.3, 'checkpoints/cvt13_in1k.pth'),
    'cvt21_upernet_ade20k.py': ('21', 0.3, 'checkpoints/cvt21_in1k.pth'),
}
FPN_STRIDES = (4, 8, 16, 32, 64)  # mmdet's Mask R-CNN levels

TOY_IMAGE_SIZE = 128
TOY_NUM_TRAIN, TOY_NUM_VAL = 2, 2
# The real pipelines resize to about 800 px (COCO) and crop 512 px (ADE20K); toy runs multiply
# every pipeline size by these factors, keeping the pipelines' structure intact. UperNet's
# 512-channel fusion convs at stride 4 dominate its cost, hence its 64-px crops.
TOY_SIZE_FACTOR = {'mmdet': TOY_IMAGE_SIZE / 800, 'mmseg': 64 / 512}
PIPELINE_SIZE_KEYS = ('scale', 'scales', 'crop_size')


# ----------------------------------------------------------------------------- helpers
def load_make_toy_data():
    # tools/ is not a package, so import the script by path.
    path = REPO_ROOT / 'tools' / 'make_toy_data.py'
    spec = importlib.util.spec_from_file_location('make_toy_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toy_data = load_make_toy_data()


def make_toy_datasets(root: Path) -> Path:
    """COCO at <root>/coco and ADE20K at <root>/ade/ADEChallengeData2016, as the configs expect
    under data/."""
    toy_data.make_coco(root / 'coco', num_train=TOY_NUM_TRAIN, num_val=TOY_NUM_VAL,
                       image_size=TOY_IMAGE_SIZE, seed=0)
    toy_data.make_ade(root / 'ade', num_train=TOY_NUM_TRAIN, num_val=TOY_NUM_VAL,
                      image_size=TOY_IMAGE_SIZE, seed=0)
    return root


def load_repo_config(name: str) -> Config:
    cfg = Config.fromfile(CONFIG_DIR / name)
    register_task_modules(task_scope(cfg))
    return cfg


def task_registry(cfg: Config, name: str):
    return getattr(importlib.import_module(f'{task_scope(cfg)}.registry'), name)


def build_model(cfg: Config):
    return task_registry(cfg, 'MODELS').build(cfg.model)


def scale_sizes(node, factor: float):
    """Multiply every image size in a pipeline config tree by ``factor`` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PIPELINE_SIZE_KEYS:
                node[key] = scale_size(value, factor)
            else:
                scale_sizes(value, factor)
    elif isinstance(node, list):
        for value in node:
            scale_sizes(value, factor)


def scale_size(size, factor: float):
    if isinstance(size, (int, float)):
        return max(1, round(size * factor))
    return type(size)(scale_size(value, factor) for value in size)


def toy_config(cfg: Config, data_root: Path, arch=TINY_ARCH) -> Config:
    """A copy of a real Mask R-CNN or UperNet config that trains one iteration on the toy data
    under ``data_root`` (see make_toy_datasets) and then validates; ``arch=None`` keeps the
    real backbone. Of the model only the backbone size, the class count (detection) and the
    number of RoIs per image (detection) change; the heads keep their real widths."""
    cfg = copy.deepcopy(cfg)
    scope = task_scope(cfg)
    model = cfg.model
    if arch is not None:
        model.backbone.arch = arch
        widths = list(arch['embed_dims'])
        if scope == 'mmdet':
            model.neck.in_channels = widths
        else:
            model.decode_head.in_channels = widths
            model.auxiliary_head.in_channels = widths[model.auxiliary_head.in_index]
    model.backbone.init_cfg = None  # no checkpoint here: the backbone's own init
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        scale_sizes(cfg[loader].dataset.pipeline, TOY_SIZE_FACTOR[scope])
    cfg.train_dataloader.batch_size = TOY_NUM_TRAIN  # one iteration per epoch
    if scope == 'mmdet':
        coco_root = f'{data_root}/coco/'
        classes = toy_data.SHAPE_CLASSES
        model.roi_head.bbox_head.num_classes = len(classes)
        model.roi_head.mask_head.num_classes = len(classes)
        # Fewer RoIs for 128-px images with at most four objects: the RoI heads' cost grows
        # with them (sampled RoIs in training, proposals and detections in testing); the mask
        # head's four 256-channel convs per positive RoI dominate a training step.
        model.train_cfg.rcnn.sampler.num = 16
        model.test_cfg.rpn.max_per_img = 100
        model.test_cfg.rcnn.max_per_img = 10
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            # CocoDataset keeps only the categories named in its metainfo.
            cfg[loader].dataset.update(data_root=coco_root, metainfo=dict(classes=classes))
        for evaluator in ('val_evaluator', 'test_evaluator'):
            cfg[evaluator].ann_file = f'{coco_root}annotations/instances_val2017.json'
        cfg.train_cfg.max_epochs = 1
    else:
        # The toy label maps hold 0..5 after reduce_zero_label: a subset of ADE20K's classes.
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].dataset.data_root = f'{data_root}/ade/ADEChallengeData2016'
        model.data_preprocessor.size = scale_size(model.data_preprocessor.size,
                                                  TOY_SIZE_FACTOR[scope])
        cfg.train_cfg.update(max_iters=1, val_interval=1)
    # Runners built in one process must not share their logger, scope or visualizer, which
    # mmengine looks up by name.
    cfg.experiment_name = f'toy_{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name
    return cfg


class LogCapture(logging.Handler):
    """Collects what mmengine logs through ``print_log(..., logger='current')``."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)


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
    assert backbone.out_type == 'featmap' and backbone.out_indices == [0, 1, 2]
    last_block = backbone.stages[-1].blocks[-1]
    assert last_block.drop_path.drop_prob == pytest.approx(drop_path_rate)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint,
                                               prefix='backbone.')
    widths = backbone.embed_dims
    if task_scope(cfg) == 'mmdet':
        assert cfg.model.neck.in_channels == widths
        assert model.roi_head.bbox_head.num_classes == 80
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


@pytest.mark.parametrize('config_name, lr, weight_decay', [
    ('cvt13_maskrcnn_coco.py', 1e-4, 0.05),
    ('cvt13_upernet_ade20k.py', 6e-5, 0.01),
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
    if task_scope(cfg) == 'mmdet':
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
    classifier = randomize_norms(CLASSIFIERS.build(cvt_classifier_cfg(TINY_ARCH, 10)))
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
