"""The CPU quickstart: the whole CvT pipeline in small, on synthetic shape data, in minutes
(``tools/quickstart.py`` is a command line over :func:`run_quickstart`).

1. generates the toy data sets if absent (:func:`cvt_mm.toy.ensure_toy_set`, as
   tools/make_toy_data.py does: ImageNet-style classification and COCO-style instance
   segmentation);
2. pretrains a small CvT classifier (the toy configs' ``demo_arch``) on the toy
   classification set (mmpretrain, configs/toy/cvt_demo_cls_toy.py);
3. starts a CvT Mask R-CNN from that checkpoint and trains it on the toy COCO set (mmdet,
   configs/toy/cvt_demo_maskrcnn_toy.py);
4. evaluates it with COCO bbox and segm metrics and draws its predictions (ground truth left,
   prediction right) into ``<work_dir>/vis/``.

Every stage is an mmengine Runner built from the toy config, as tools/train.py builds it
(:mod:`cvt_mm.engine`). The toy configs inherit the real ones and change only data, image
size, model size, sample counts and schedule.
"""
import json
import os
import os.path as osp
import shutil
import time
from typing import Callable, Optional

import torch

from ..apis.model_zoo import config_dir
from ..engine import build_runner, enable_visualization, load_config
from .shapes import ensure_toy_set
from .shrinking import shrink_config

DEFAULT_WORK_DIR = 'work_dirs/quickstart'
DEFAULT_DATA_ROOT = 'data/toy'
PRETRAIN_CONFIG = 'toy/cvt_demo_cls_toy.py'
DETECTION_CONFIG = 'toy/cvt_demo_maskrcnn_toy.py'
SCRATCH_CONFIG = 'toy/cvt_demo_maskrcnn_toy_scratch.py'
# <work_dir>/pretrain/<this>: the detector's backbone source, where the toy configs'
# toy_pretrained points.
PRETRAINED_NAME = 'cvt_demo_cls_toy.pth'

# The toy sets of the quickstart (docs/quickstart.md): small scenes (objects of 24-72 px), and
# more single-shape images than the generator's default for the pretraining.
QUICKSTART_DATA = dict(
    coco=dict(num_train=600, num_val=60, image_size=160),
    imagenet=dict(train_per_class=1000, val_per_class=20),
)

REAL_COMMAND = """\
Next: the real thing, CvT-13 Mask R-CNN on COCO 2017 (1x schedule, 16 images per iteration):

    python tools/convert_checkpoint.py CvT-13-224x224-IN-1k.pth checkpoints/cvt13_in1k.pth
    python tools/train.py configs/cvt13_maskrcnn_coco.py             # one process
    bash tools/dist_train.sh configs/cvt13_maskrcnn_coco.py 8        # 8 GPUs x 2 images

with COCO laid out as mmdet expects:

    data/coco/annotations/instances_{train,val}2017.json
    data/coco/train2017/*.jpg
    data/coco/val2017/*.jpg

(docs/dense_prediction.md: data, checkpoints and the UperNet ADE20K config.)"""


def data_params(num_train: Optional[int] = None, num_val: Optional[int] = None,
                cls_per_class: Optional[int] = None) -> dict:
    """The toy sets' generator parameters: :data:`QUICKSTART_DATA` with the given counts."""
    coco = dict(QUICKSTART_DATA['coco'], seed=0)
    imagenet = dict(QUICKSTART_DATA['imagenet'], seed=0)
    if num_train is not None:
        coco['num_train'] = num_train
    if num_val is not None:
        coco['num_val'] = num_val
    if cls_per_class is not None:
        imagenet['train_per_class'] = cls_per_class
        imagenet['val_per_class'] = max(1, cls_per_class // 5)
    return dict(imagenet=imagenet, coco=coco)


def prepare_data(data_root: str, params: dict) -> None:
    """Generate the classification and COCO toy sets under ``data_root`` unless present with
    the same parameters. A set made by the generator with other parameters is regenerated; a
    directory it did not make is never touched (SystemExit naming it)."""
    for task, task_params in params.items():
        outcome = ensure_toy_set(data_root, task, task_params)
        if outcome.action == 'refused':
            raise SystemExit(f'{outcome.root} exists but was not made by tools/make_toy_data.py; '
                             'pass another --data-root')
        if outcome.action == 'kept' and outcome.outdated == 'params':
            print(f'{task:9s} regenerating {outcome.root}: made with {outcome.recorded_params}, '
                  f'the quickstart uses {outcome.params}')
            outcome = ensure_toy_set(data_root, task, task_params, force=True)
        if outcome.action == 'kept':
            print(f'{task:9s} toy data present: {outcome.root}')
        else:
            print(outcome.message, flush=True)


def stage_config(config: str, work_dir: str, name: str, seed: int, data_root: str,
                 epochs: Optional[int]):
    """A toy config prepared as tools/train.py would (:func:`cvt_mm.engine.load_config`),
    re-rooted at ``data_root`` with ``epochs`` epochs (None: the config's) and ``seed``;
    evaluated once after training (by :func:`run_quickstart` rather than the train loop)."""
    cfg = load_config(str(config_dir() / config), work_dir=work_dir)
    shrink_config(cfg, data_root=data_root, length=epochs, run_name=name)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.train_cfg.val_interval = 10**9
    return cfg


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint a Runner's ``last_checkpoint`` marker in ``work_dir`` names, if any."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            return f.read().strip()
    return None


def run_quickstart(work_dir: str = DEFAULT_WORK_DIR, data_root: str = DEFAULT_DATA_ROOT,
                   seed: int = 0, skip_pretrain: bool = False, pretrained: Optional[str] = None,
                   pretrain_epochs: Optional[int] = None, det_epochs: Optional[int] = None,
                   num_train: Optional[int] = None, num_val: Optional[int] = None,
                   cls_per_class: Optional[int] = None, cfg_options: Optional[dict] = None,
                   prepare_runner: Optional[Callable] = None) -> dict:
    """Run the quickstart's stages; write and return its summary.

    Args:
        work_dir (str): Checkpoints, logs, ``metrics.json`` and ``vis/`` go here.
            Defaults to :data:`DEFAULT_WORK_DIR`.
        data_root (str): The toy data sets, generated here if absent.
            Defaults to :data:`DEFAULT_DATA_ROOT`.
        seed (int): The training seed. Defaults to 0.
        skip_pretrain (bool): Skip the classification stage; the detector starts from
            ``pretrained``, else from the checkpoint an earlier run left in
            ``<work_dir>/pretrain/``, else from scratch. Defaults to False.
        pretrained (str, optional): A classifier checkpoint to start the detector from (with
            ``skip_pretrain``). Defaults to None.
        pretrain_epochs, det_epochs (int, optional): Epochs of the two stages.
            Defaults to None (the toy configs').
        num_train, num_val (int, optional): Toy COCO train and val images.
            Defaults to None (:data:`QUICKSTART_DATA`).
        cls_per_class (int, optional): Toy classification train images per class (val: a
            fifth). Defaults to None (:data:`QUICKSTART_DATA`).
        cfg_options (dict, optional): Overrides of the detection config. Defaults to None.
        prepare_runner (callable, optional): Applied to each Runner before it runs (the
            command line quiets known library notices in its logger). Defaults to None.

    Returns:
        dict: ``pretrained``, ``pretrain_metrics``, ``detection_metrics``,
        ``detection_checkpoint``, ``vis_dir``, ``timings_s``, ``seed``; also written to
        ``<work_dir>/metrics.json``.
    """
    prepare_runner = prepare_runner or (lambda runner: runner)
    os.makedirs(work_dir, exist_ok=True)
    timings = {}
    total_start = start = time.perf_counter()
    prepare_data(data_root, data_params(num_train, num_val, cls_per_class))
    timings['data'] = time.perf_counter() - start

    pretrain_metrics = {}
    if skip_pretrain:
        earlier = osp.join(work_dir, 'pretrain', PRETRAINED_NAME)
        pretrained = pretrained or (earlier if osp.isfile(earlier) else None)
    else:
        if pretrained:
            print(f'--pretrained {pretrained} ignored: pretraining ran')
        start = time.perf_counter()
        cfg = stage_config(PRETRAIN_CONFIG, osp.join(work_dir, 'pretrain'), 'pretrain', seed,
                           osp.join(data_root, 'imagenet'), pretrain_epochs)
        runner = prepare_runner(build_runner(cfg))
        runner.train()
        pretrain_metrics = runner.val()
        # A stable name for the detector's init_cfg (the toy configs' toy_pretrained).
        pretrained = osp.join(work_dir, 'pretrain', PRETRAINED_NAME)
        torch.save(dict(meta=dict(config=osp.basename(PRETRAIN_CONFIG), seed=seed),
                        state_dict=runner.model.state_dict()), pretrained)
        timings['pretrain'] = time.perf_counter() - start

    cfg = stage_config(DETECTION_CONFIG if pretrained else SCRATCH_CONFIG,
                       osp.join(work_dir, 'maskrcnn'), 'maskrcnn', seed,
                       osp.join(data_root, 'coco') + '/', det_epochs)
    if pretrained:
        cfg.model.backbone.init_cfg.checkpoint = pretrained
    # Every test image drawn: ground truth on the left, predictions on the right. Absolute, so
    # that mmdet does not put it under <work_dir>/<timestamp>/.
    vis_dir = osp.abspath(osp.join(work_dir, 'vis'))
    shutil.rmtree(vis_dir, ignore_errors=True)
    enable_visualization(cfg, vis_dir)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    runner = prepare_runner(build_runner(cfg))
    start = time.perf_counter()
    runner.train()
    timings['detection train'] = time.perf_counter() - start
    start = time.perf_counter()
    metrics = runner.test()
    timings['detection eval + drawing'] = time.perf_counter() - start
    timings['total'] = time.perf_counter() - total_start

    summary = dict(pretrained=pretrained, pretrain_metrics=pretrain_metrics,
                   detection_metrics=metrics,
                   detection_checkpoint=last_checkpoint(osp.join(work_dir, 'maskrcnn')),
                   vis_dir=vis_dir, timings_s={k: round(v, 1) for k, v in timings.items()},
                   seed=seed)
    with open(osp.join(work_dir, 'metrics.json'), 'w') as f:
        json.dump(summary, f, indent=2, default=float)
    return summary


def format_summary(summary: dict) -> str:
    """The summary :func:`run_quickstart` returns, as printed, with :data:`REAL_COMMAND`."""
    metrics = summary['detection_metrics']
    drawn = len(os.listdir(summary['vis_dir'])) if osp.isdir(summary['vis_dir']) else 0
    start = summary['pretrained'] or 'scratch (no pretraining)'
    nan = float('nan')
    lines = ['', '=' * 72, 'CvT quickstart summary', '=' * 72]
    if summary['pretrain_metrics']:
        top1 = summary['pretrain_metrics'].get('accuracy/top1')
        lines.append(f'toy classification top-1 (val): {top1:.1f}%')
    lines += [
        f'Mask R-CNN backbone init:   {start}',
        f'toy COCO val bbox AP50:     {metrics.get("coco/bbox_mAP_50", nan):.3f}'
        f'   (bbox AP {metrics.get("coco/bbox_mAP", nan):.3f})',
        f'toy COCO val segm AP50:     {metrics.get("coco/segm_mAP_50", nan):.3f}'
        f'   (segm AP {metrics.get("coco/segm_mAP", nan):.3f})',
        f'drawn predictions:          {drawn} images in {summary["vis_dir"]}',
        f'detection checkpoint:       {summary["detection_checkpoint"]}',
        'time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in summary['timings_s'].items()),
        '=' * 72, '', REAL_COMMAND]
    return '\n'.join(lines)
