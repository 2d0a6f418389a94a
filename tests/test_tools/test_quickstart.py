"""tools/quickstart.py (cvt_mm.toy.quickstart) end to end on a minuscule setting (every stage
runs and leaves its artifacts), and the toy configs it runs. Learning quality is measured in
docs/quickstart.md, not asserted here."""
import json
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIG_DIR, TOOLS_DIR
from mmengine.config import Config

from cvt_mm.toy import ADE_TOY_CLASSES, SHAPE_CLASSES
from cvt_mm.toy.quickstart import DEFAULT_WORK_DIR, PRETRAINED_NAME

QUICKSTART = TOOLS_DIR / 'quickstart.py'
TOY_CONFIGS = sorted((CONFIG_DIR / 'toy').glob('*.py'))

# A few images, one iteration per stage (the batch is larger than each training set).
TINY = ['--num-train', '4', '--num-val', '2', '--cls-per-class', '2',
        '--pretrain-epochs', '1', '--det-epochs', '1', '--threads', '1']


def _tiny_run(tmp_path, *extra):
    work_dir = tmp_path / 'qs'
    argv = [sys.executable, str(QUICKSTART), '--work-dir', str(work_dir),
            '--data-root', str(tmp_path / 'toy'), *TINY, *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work_dir, result.stdout


def test_quickstart_end_to_end(tmp_path):
    work_dir, stdout = _tiny_run(tmp_path)

    summary = json.loads((work_dir / 'metrics.json').read_text())
    # Pretraining left a classifier checkpoint and the detector started from it.
    pretrained = work_dir / 'pretrain' / 'cvt_demo_cls_toy.pth'
    assert pretrained.is_file()
    assert Path(summary['pretrained']) == pretrained
    assert 'accuracy/top1' in summary['pretrain_metrics']
    # The detector was trained, checkpointed and evaluated with COCO bbox and segm metrics.
    assert Path(summary['detection_checkpoint']).is_file()
    metrics = summary['detection_metrics']
    assert {'coco/bbox_mAP_50', 'coco/segm_mAP_50'} <= set(metrics)
    # Predictions were drawn.
    drawn = list((work_dir / 'vis').glob('*.jpg'))
    assert drawn, 'no visualisation written'
    # The summary and the pointer to the real config were printed.
    assert 'bbox AP50' in stdout and 'segm AP50' in stdout
    assert 'tools/train.py configs/cvt13_maskrcnn_coco.py' in stdout


@pytest.mark.parametrize('config', TOY_CONFIGS, ids=lambda path: path.name)
def test_toy_configs_inherit_the_real_ones(config):
    """Each toy config derives from a real config (directly or through another toy one)."""
    text = config.read_text()
    assert "_base_ = ['../cvt13_" in text or "_base_ = ['./cvt_demo_" in text
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.type == 'CvT'
    assert isinstance(cfg.model.backbone.arch, dict)


@pytest.mark.parametrize('config', TOY_CONFIGS, ids=lambda path: path.name)
def test_toy_configs_name_the_generators_classes(config):
    """The classes of configs/toy/_base_/shared.py, which cannot import them, are those the
    toy data generator writes, and every class-sized part of each toy config follows them."""
    cfg = Config.fromfile(str(config))
    classes = ADE_TOY_CLASSES if cfg.default_scope == 'mmseg' else SHAPE_CLASSES
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == classes
    assert tuple(cfg.val_dataloader.dataset.metainfo.classes) == classes
    model = cfg.model
    if cfg.default_scope == 'mmpretrain':
        heads = [model.head, cfg.data_preprocessor]
    elif cfg.default_scope == 'mmdet':
        heads = [model.roi_head.bbox_head, model.roi_head.mask_head]
    else:
        heads = [model.decode_head, model.auxiliary_head]
    assert [head.num_classes for head in heads] == [len(classes)] * len(heads)


def test_toy_pretrained_checkpoint_is_where_the_quickstart_leaves_it():
    base = Config.fromfile(str(CONFIG_DIR / 'toy/_base_/shared.py'))
    assert base.toy_pretrained == osp.join(DEFAULT_WORK_DIR, 'pretrain', PRETRAINED_NAME)
