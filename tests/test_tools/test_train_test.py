"""tools/train.py, tools/test.py, tools/dist_train.sh and tools/dist_test.sh on classification,
detection and segmentation configs, run as a user would: in subprocesses, on toy data."""
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import TOOLS_DIR as TOOLS
from helpers import build_model, load_repo_config, make_toy_datasets, toy_config
from mmengine.config import Config

from cvt_mm import engine
from cvt_mm.apis import classifier_cfg
from cvt_mm.engine import config as engine_config
from cvt_mm.testing import FAST_TEST_ARCH
from cvt_mm.toy import shapes

# One tiny config per task library; the dense ones are the real configs made small.
DENSE_CONFIGS = {'mmdet': 'cvt13_maskrcnn_coco.py', 'mmseg': 'cvt13_upernet_ade20k.py'}
# Where each task's first run leaves its checkpoint, and what its test run reports.
FIRST_CHECKPOINT = {'mmpretrain': 'epoch_1.pth', 'mmdet': 'epoch_1.pth',
                    'mmseg': 'iter_1.pth'}
SECOND_CHECKPOINT = {'mmpretrain': 'epoch_2.pth', 'mmdet': 'epoch_2.pth',
                     'mmseg': 'iter_2.pth'}
LONGER_TRAINING = {'mmpretrain': 'train_cfg.max_epochs=2', 'mmdet': 'train_cfg.max_epochs=2',
                   'mmseg': 'train_cfg.max_iters=2'}
TEST_METRICS = {'mmpretrain': ('accuracy/top1', ), 'mmdet': ('coco/bbox_mAP', 'coco/segm_mAP'),
                'mmseg': ('mIoU', )}
TASKS = tuple(FIRST_CHECKPOINT)
# mmseg's test metrics, printed by tools/test.py as "name: value".
SEGMENTATION_METRIC_LINES = re.compile(r'^(?:aAcc|mIoU|mAcc): .*$', re.MULTILINE)
# The toy label maps hold classes 0..5 (after reduce_zero_label) of ADE20K's 150.
TOY_SEGMENTATION_CLASSES = 6
# Training runs skip validation (mmengine validates at the end otherwise): test.py evaluates.
NO_VALIDATION = 'train_cfg.val_begin=1000'
CLASSIFICATION_LR = 1e-3  # constant: the classification config has no parameter scheduler

CLASSIFICATION_CONFIG = """
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
model = {model!r}
data_preprocessor = dict(num_classes={num_classes}, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=64),
            dict(type='PackInputs')]
train_dataloader = dict(
    batch_size={num_classes}, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root={root!r}, ann_file='meta/train.txt',
                 data_prefix='train', pipeline=pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root={root!r}, ann_file='meta/val.txt',
                 data_prefix='val', pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr={lr}))
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
val_cfg = dict()
test_cfg = dict()
"""


def run(command, cwd, **env_overrides):
    """Run a command; fail the test with its output if it fails.

    One intra-op thread per process: the toy models are too small to gain from more, and
    OpenMP threads competing with other jobs for the cores slow them down several times.
    """
    env = dict(os.environ, OMP_NUM_THREADS='1', **env_overrides)
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f'{command} exited with {result.returncode}\n--- stdout\n{result.stdout[-5000:]}'
        f'\n--- stderr\n{result.stderr[-5000:]}')
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def task_configs(tmp_path_factory):
    """One tiny training config per task, written to disk for the tools to read."""
    root = tmp_path_factory.mktemp('tool_configs')
    data_root = make_toy_datasets(root / 'data')
    imagenet_root = root / 'data' / 'imagenet'
    shapes.make_imagenet(imagenet_root, train_per_class=1, val_per_class=1, seed=0)

    paths = {}
    num_classes = len(shapes.SHAPE_CLASSES)
    paths['mmpretrain'] = root / 'classification.py'
    paths['mmpretrain'].write_text(CLASSIFICATION_CONFIG.format(
        model=classifier_cfg(FAST_TEST_ARCH, num_classes), num_classes=num_classes,
        root=str(imagenet_root), lr=CLASSIFICATION_LR))
    for scope, config_name in DENSE_CONFIGS.items():
        paths[scope] = root / f'{scope}.py'
        toy_config(load_repo_config(config_name), data_root).dump(paths[scope])
    return paths


@pytest.fixture(scope='module')
def trained(task_configs, tmp_path_factory):
    """tools/train.py for each task: the work directory of a one-iteration run."""
    work_dirs = {}
    for scope, config in task_configs.items():
        work_dirs[scope] = tmp_path_factory.mktemp(f'train_{scope}')
        run([sys.executable, TOOLS / 'train.py', config, '--work-dir', work_dirs[scope],
             '--cfg-options', NO_VALIDATION], cwd=work_dirs[scope])
    return work_dirs


@pytest.mark.parametrize('scope', TASKS)
def test_train_writes_a_checkpoint(scope, trained):
    checkpoint = trained[scope] / FIRST_CHECKPOINT[scope]
    assert checkpoint.is_file()
    assert (trained[scope] / 'last_checkpoint').read_text().strip() == str(checkpoint)


@pytest.mark.parametrize('scope', TASKS)
def test_train_resumes_from_a_checkpoint(scope, task_configs, trained, tmp_path):
    checkpoint = trained[scope] / FIRST_CHECKPOINT[scope]
    output = run([sys.executable, TOOLS / 'train.py', task_configs[scope],
                  '--work-dir', tmp_path, '--resume', checkpoint,
                  '--cfg-options', LONGER_TRAINING[scope], NO_VALIDATION], cwd=tmp_path)
    assert re.search(r'resumed epoch: \d+, iter: 1\b', output), output[-3000:]
    assert (tmp_path / SECOND_CHECKPOINT[scope]).is_file()
    assert not (tmp_path / FIRST_CHECKPOINT[scope]).exists()  # started after iteration 1


@pytest.mark.parametrize('scope', TASKS)
def test_test_prints_metrics_and_draws_predictions(scope, task_configs, trained, tmp_path):
    show_dir = tmp_path / 'drawn'
    output = run([sys.executable, TOOLS / 'test.py', task_configs[scope],
                  trained[scope] / FIRST_CHECKPOINT[scope], '--work-dir', tmp_path / 'work',
                  '--show-dir', show_dir], cwd=tmp_path)
    for metric in TEST_METRICS[scope]:
        assert re.search(rf'^{re.escape(metric)}: \d', output, re.MULTILINE), output[-3000:]
    drawn = list(show_dir.rglob('*.jpg')) + list(show_dir.rglob('*.png'))
    num_test_images = len(shapes.SHAPE_CLASSES) if scope == 'mmpretrain' else 2
    assert len(drawn) == num_test_images


def test_two_process_training_on_cpu(task_configs, tmp_path):
    output = run(['bash', TOOLS / 'dist_train.sh', task_configs['mmdet'], 2,
                  '--work-dir', tmp_path,
                  # Two toy images: one per process and iteration, for two epochs, then a
                  # validation that gathers both processes' predictions.
                  '--cfg-options', 'train_dataloader.batch_size=1', 'train_cfg.max_epochs=2',
                  'train_cfg.val_interval=2'],
                 cwd=tmp_path, PYTHON=sys.executable)
    assert 'Distributed training: True' in output
    assert 'GPU number: 2' in output  # mmengine's name for the world size
    assert re.search(r'Epoch\(train\) +\[2\]\[1/1\]', output), output[-3000:]
    assert re.search(r'Epoch\(val\) +\[2\]\[1/1\] +coco/bbox_mAP', output), output[-3000:]
    assert (tmp_path / 'epoch_2.pth').is_file()


def checkpoint_lrs(checkpoint) -> list:
    """The learning rate of each of the optimizer's parameter groups, as the run saved it."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    return [group['lr'] for group in state['optimizer']['param_groups']]


@pytest.mark.parametrize('flags, factor', [((), 1.0), (('--auto-scale-lr', ), 2 / 16)],
                         ids=['without', 'with'])
def test_auto_scale_lr_scales_by_the_total_batch(flags, factor, task_configs, tmp_path):
    """base_batch_size 16, one process of batch 2: the optimizer trains at the config's lr
    times 2/16 with --auto-scale-lr, at the config's lr without it."""
    run([sys.executable, TOOLS / 'train.py', task_configs['mmpretrain'], '--work-dir', tmp_path,
         *flags, '--cfg-options', 'train_dataloader.batch_size=2',
         'auto_scale_lr.base_batch_size=16', NO_VALIDATION], cwd=tmp_path)
    assert checkpoint_lrs(tmp_path / 'epoch_1.pth') == [pytest.approx(CLASSIFICATION_LR * factor)]


def test_auto_scale_lr_without_a_base_batch_size_is_refused(task_configs, tmp_path):
    config = task_configs['mmpretrain']  # no auto_scale_lr
    result = subprocess.run([sys.executable, TOOLS / 'train.py', config, '--work-dir', tmp_path,
                             '--auto-scale-lr'], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f'--auto-scale-lr needs auto_scale_lr.base_batch_size in {config}: '), result.stderr
    assert not list(tmp_path.glob('*.pth'))


@pytest.fixture(scope='module')
def segmentation_checkpoint(task_configs, tmp_path_factory):
    """Random UperNet weights whose classifier scores only the toy data's classes: random
    weights alone predict other classes everywhere, and every metric is 0. With these, each of
    the two test images has metrics of its own (aAcc 20.87 and 21.04, both together 20.96)."""
    cfg = Config.fromfile(task_configs['mmseg'])
    engine.register_task_modules('mmseg')
    state = build_model(cfg).state_dict()
    state['decode_head.conv_seg.bias'][TOY_SEGMENTATION_CLASSES:] = -1e4
    path = tmp_path_factory.mktemp('segmentation_checkpoint') / 'upernet.pth'
    torch.save({'state_dict': state}, path)
    return path


def test_two_process_testing_on_cpu_gives_the_one_process_metrics(task_configs,
                                                                   segmentation_checkpoint,
                                                                   tmp_path):
    """tools/dist_test.sh with two processes, one test image each: rank 0 alone prints the
    metrics, and they are tools/test.py's with one process. mmseg sums pixel counts over the
    images (aAcc, per-class IoU and accuracy), and each image alone gives other values, so an
    image lost or evaluated twice would change them."""
    config = task_configs['mmseg']
    one = run([sys.executable, TOOLS / 'test.py', config, segmentation_checkpoint,
               '--work-dir', tmp_path / 'one'], cwd=tmp_path)
    two = run(['bash', TOOLS / 'dist_test.sh', config, segmentation_checkpoint, 2,
               '--work-dir', tmp_path / 'two'], cwd=tmp_path, PYTHON=sys.executable)
    assert 'Distributed launcher: pytorch' in two
    assert 'GPU number: 2' in two  # mmengine's name for the world size
    one_metrics = SEGMENTATION_METRIC_LINES.findall(one)
    assert len(one_metrics) == 3 and 'aAcc: 0.0' not in one_metrics, one[-3000:]
    assert SEGMENTATION_METRIC_LINES.findall(two) == one_metrics, two[-3000:]


# ----------------------------------------------------------------------------- helpers
def test_amp_refuses_cpu_clearly(monkeypatch):
    for device_check in ('is_cuda_available', 'is_npu_available', 'is_mlu_available',
                         'is_musa_available'):
        monkeypatch.setattr(engine_config, device_check, lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    with pytest.raises(SystemExit, match='--amp needs a GPU'):
        engine.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'


@pytest.mark.parametrize('dtype, loss_scale', [('float16', 'dynamic'), ('bfloat16', 1.0)])
def test_amp_dtype_choice(monkeypatch, dtype, loss_scale):
    """float16 needs dynamic loss scaling against overflow; bfloat16 has float32's range."""
    monkeypatch.setattr(engine_config, 'is_cuda_available', lambda: True)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    engine.enable_amp(cfg, dtype=dtype)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == dtype and cfg.optim_wrapper.loss_scale == loss_scale
    with pytest.raises(ValueError, match='float16'):
        engine.enable_amp(cfg, dtype='int8')


def test_task_scope_comes_from_default_scope():
    assert engine.task_scope(Config(dict(default_scope='mmseg'))) == 'mmseg'
    with pytest.raises(ValueError, match='default_scope'):
        engine.task_scope(Config(dict(default_scope='mmocr')))


def test_resume_argument():
    cfg = Config(dict(resume=False, load_from=None))
    engine.apply_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    engine.apply_resume(cfg, 'work/epoch_3.pth')
    assert cfg.resume is True and cfg.load_from == 'work/epoch_3.pth'


def test_sync_bn_replaced_for_cpu_processes():
    model = dict(decode_head=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                 auxiliary_head=[dict(norm_cfg=dict(type='SyncBN')), dict(type='FCNHead')])
    assert engine.replace_sync_bn(model) == 2
    assert model['decode_head']['norm_cfg'] == dict(type='BN', requires_grad=True)
    assert model['auxiliary_head'][0]['norm_cfg']['type'] == 'BN'
