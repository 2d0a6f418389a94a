#!/usr/bin/env python
"""CPU quickstart: the whole CvT pipeline in small, on synthetic shape data, in minutes.

    python tools/quickstart.py [--work-dir work_dirs/quickstart] [--seed 0] [--skip-pretrain]

1. generates the toy data sets if absent (cvt_mm.datasets, as tools/make_toy_data.py does:
   ImageNet-style classification and COCO-style instance segmentation, under --data-root,
   default data/toy);
2. pretrains a tiny CvT classifier on the toy classification set (mmpretrain,
   configs/toy/cvt_tiny_cls_toy.py);
3. starts a CvT Mask R-CNN from that checkpoint and trains it on the toy COCO set (mmdet,
   configs/toy/cvt_tiny_maskrcnn_toy.py);
4. evaluates it with COCO bbox and segm metrics and draws its predictions (ground truth left,
   prediction right) into <work-dir>/vis/;
5. prints a summary and the command that trains the real CvT-13 Mask R-CNN on COCO.

Every stage is an mmengine Runner built from the toy config, as tools/train.py builds it
(cvt_mm.engine). The toy configs inherit the real ones and change only data, image size,
model size, sample counts and schedule. Measured numbers: docs/quickstart.md.
"""
import _cli  # noqa: F401,I001  (first: quiets known third-party start-up notices)
import argparse
import json
import os
import os.path as osp
import shutil
import time
from pathlib import Path

import torch
from _cli import quiet_runner_logger
from mmengine.config import DictAction

from cvt_mm.datasets import ensure_toy_set
from cvt_mm.engine import build_runner, enable_visualization, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]

PRETRAIN_CONFIG = REPO_ROOT / 'configs/toy/cvt_tiny_cls_toy.py'
DETECTION_CONFIG = REPO_ROOT / 'configs/toy/cvt_tiny_maskrcnn_toy.py'
SCRATCH_CONFIG = REPO_ROOT / 'configs/toy/cvt_tiny_maskrcnn_toy_scratch.py'
PRETRAINED_NAME = 'cvt_tiny_cls_toy.pth'  # <work-dir>/pretrain/<this>: the backbone source

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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Pretrain a tiny CvT on toy shapes, train Mask R-CNN from it, evaluate '
        'and draw the predictions (CPU, minutes).')
    parser.add_argument('--work-dir', default='work_dirs/quickstart',
                        help='checkpoints, logs, metrics.json and vis/ go here')
    parser.add_argument('--data-root', default='data/toy',
                        help='toy data sets (generated here if absent)')
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--skip-pretrain', action='store_true',
                        help='skip the classification stage; the detector starts from '
                        '--pretrained, else from the checkpoint an earlier run left in '
                        '<work-dir>/pretrain/, else from scratch')
    parser.add_argument('--pretrained', help='classifier checkpoint to start the detector from')
    # Sizes, for tests and experiments; the defaults are the measured quickstart.
    parser.add_argument('--pretrain-epochs', type=int,
                        help='classification epochs (default: the toy config)')
    parser.add_argument('--det-epochs', type=int,
                        help='detection epochs (default: the toy config)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='toy COCO train images (default 600)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='toy COCO val images (default 60)')
    parser.add_argument('--cls-per-class', type=int, default=None,
                        help='toy classification train images per class (default 1000)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch compute threads (default: one per CPU core)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='extra overrides for the detection config')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- data
# The toy sets the quickstart was measured with (docs/quickstart.md): small scenes (objects of
# 24-72 px), and more single-shape images than the generator's default for the pretraining.
QUICKSTART_DATA = dict(
    coco=dict(num_train=600, num_val=60, image_size=160),
    imagenet=dict(train_per_class=1000, val_per_class=20),
)


def data_params(args):
    coco = dict(QUICKSTART_DATA['coco'], seed=0)
    imagenet = dict(QUICKSTART_DATA['imagenet'], seed=0)
    if args.num_train is not None:
        coco['num_train'] = args.num_train
    if args.num_val is not None:
        coco['num_val'] = args.num_val
    if args.cls_per_class is not None:
        imagenet['train_per_class'] = args.cls_per_class
        imagenet['val_per_class'] = max(1, args.cls_per_class // 5)
    return dict(imagenet=imagenet, coco=coco)


def prepare_data(args):
    """Generate the classification and COCO toy sets under --data-root unless present with the
    same parameters. A set made by the generator with other parameters is regenerated; a
    directory it did not make is never touched."""
    for task, params in data_params(args).items():
        outcome = ensure_toy_set(args.data_root, task, params)
        if outcome.action == 'refused':
            raise SystemExit(f'{outcome.root} exists but was not made by tools/make_toy_data.py; '
                             'pass another --data-root')
        if outcome.action == 'kept' and outcome.outdated == 'params':
            print(f'{task:9s} regenerating {outcome.root}: made with {outcome.recorded_params}, '
                  f'the quickstart uses {outcome.params}')
            outcome = ensure_toy_set(args.data_root, task, params, force=True)
        if outcome.action == 'kept':
            print(f'{task:9s} toy data present: {outcome.root}')
        else:
            print(outcome.message, flush=True)


# ----------------------------------------------------------------------------- configs
def set_epochs(cfg, epochs):
    """Shorten or lengthen an epoch-based toy schedule, keeping its shape."""
    old = cfg.train_cfg.max_epochs
    if epochs is None or epochs == old:
        return
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.checkpoint.interval = epochs
    for scheduler in cfg.param_scheduler:
        if not scheduler.get('by_epoch', True):
            continue  # iteration-based warmup
        if scheduler.get('end', old) >= old:
            scheduler.end = epochs
        if 'milestones' in scheduler:
            scheduler.milestones = sorted(
                {max(1, min(epochs - 1, round(m * epochs / old))) for m in scheduler.milestones})


def stage_config(config_path, work_dir, name, args, data_root, epochs):
    """A toy config prepared as tools/train.py would (cvt_mm.engine.load_config), plus:
    the toy data root, the seed, the number of epochs, one evaluation after training (run by
    this script rather than the train loop) and a visualizer/logger named after the stage,
    since several Runners share this process."""
    cfg = load_config(str(config_path), work_dir=work_dir)
    point_data_root(cfg, data_root)
    set_epochs(cfg, epochs)
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    cfg.experiment_name = f'{name}_{time.strftime("%Y%m%d_%H%M%S")}'
    cfg.visualizer.name = cfg.experiment_name
    # Evaluate once, after training, through runner.val()/test() below.
    cfg.train_cfg.val_interval = 10**9
    return cfg


def point_data_root(cfg, root):
    """Re-root the toy config's dataloaders and COCO evaluators at ``root``."""
    old = cfg.data_root
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        if 'ann_file' in cfg[evaluator]:
            cfg[evaluator].ann_file = cfg[evaluator].ann_file.replace(old, root, 1)
    cfg.data_root = root


# ----------------------------------------------------------------------------- stages
def pretrain(args, work_dir):
    """Train the toy classifier; returns (weights file, val metrics)."""
    cfg = stage_config(PRETRAIN_CONFIG, osp.join(work_dir, 'pretrain'), 'pretrain', args,
                       osp.join(args.data_root, 'imagenet'), args.pretrain_epochs)
    runner = quiet_runner_logger(build_runner(cfg))
    runner.train()
    metrics = runner.val()
    # A stable name for the detector's init_cfg (the toy configs' toy_pretrained points here).
    weights = osp.join(work_dir, 'pretrain', PRETRAINED_NAME)
    torch.save(dict(meta=dict(config=osp.basename(PRETRAIN_CONFIG), seed=args.seed),
                    state_dict=runner.model.state_dict()), weights)
    return weights, metrics


def find_earlier_pretrained(work_dir):
    weights = osp.join(work_dir, 'pretrain', PRETRAINED_NAME)
    return weights if osp.isfile(weights) else None


def detect(args, work_dir, pretrained):
    """Train Mask R-CNN from ``pretrained`` (None: from scratch), evaluate, draw."""
    config = DETECTION_CONFIG if pretrained else SCRATCH_CONFIG
    cfg = stage_config(config, osp.join(work_dir, 'maskrcnn'), 'maskrcnn', args,
                       osp.join(args.data_root, 'coco') + '/', args.det_epochs)
    if pretrained:
        cfg.model.backbone.init_cfg.checkpoint = pretrained
    # Draw every test image: ground truth on the left, predictions on the right. Absolute, so
    # that mmdet does not put it under <work_dir>/<timestamp>/.
    vis_dir = osp.abspath(osp.join(work_dir, 'vis'))
    shutil.rmtree(vis_dir, ignore_errors=True)
    enable_visualization(cfg, vis_dir)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    runner = quiet_runner_logger(build_runner(cfg))
    start = time.perf_counter()
    runner.train()
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    metrics = runner.test()
    test_time = time.perf_counter() - start
    return metrics, vis_dir, train_time, test_time, cfg


def main(argv=None):
    args = parse_args(argv)
    # One compute thread per core: on an idle 2-core machine the toy classifier's step is 1.4x
    # and the detector's 1.1x faster with 2 threads than with 1 (the loader worker's decoding
    # is light). When other jobs share the CPU, --threads 1 is the robust choice: spinning
    # OpenMP threads fighting other load can make a step several times slower.
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    work_dir = args.work_dir
    os.makedirs(work_dir, exist_ok=True)
    timings = {}
    total_start = time.perf_counter()

    start = time.perf_counter()
    prepare_data(args)
    timings['data'] = time.perf_counter() - start

    pretrain_metrics = {}
    if args.skip_pretrain:
        pretrained = args.pretrained or find_earlier_pretrained(work_dir)
    else:
        start = time.perf_counter()
        pretrained, pretrain_metrics = pretrain(args, work_dir)
        timings['pretrain'] = time.perf_counter() - start
        if args.pretrained:
            print(f'--pretrained {args.pretrained} ignored: pretraining ran')

    metrics, vis_dir, train_time, test_time, det_cfg = detect(args, work_dir, pretrained)
    timings['detection train'] = train_time
    timings['detection eval + drawing'] = test_time
    timings['total'] = time.perf_counter() - total_start

    summary = dict(
        pretrained=pretrained,
        pretrain_metrics=pretrain_metrics,
        detection_metrics=metrics,
        detection_checkpoint=_last_checkpoint(osp.join(work_dir, 'maskrcnn')),
        vis_dir=vis_dir,
        timings_s={k: round(v, 1) for k, v in timings.items()},
        seed=args.seed)
    with open(osp.join(work_dir, 'metrics.json'), 'w') as f:
        json.dump(summary, f, indent=2, default=float)
    print_summary(summary)
    return summary


def _last_checkpoint(work_dir):
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            return f.read().strip()
    return None


def print_summary(summary):
    metrics = summary['detection_metrics']
    timings = summary['timings_s']
    drawn = len(os.listdir(summary['vis_dir'])) if osp.isdir(summary['vis_dir']) else 0
    start = summary['pretrained'] or 'scratch (no pretraining)'
    lines = ['', '=' * 72, 'CvT quickstart summary', '=' * 72]
    if summary['pretrain_metrics']:
        top1 = summary['pretrain_metrics'].get('accuracy/top1')
        lines.append(f'toy classification top-1 (val): {top1:.1f}%')
    lines += [
        f'Mask R-CNN backbone init:   {start}',
        f'toy COCO val bbox AP50:     {metrics.get("coco/bbox_mAP_50", float("nan")):.3f}'
        f'   (bbox AP {metrics.get("coco/bbox_mAP", float("nan")):.3f})',
        f'toy COCO val segm AP50:     {metrics.get("coco/segm_mAP_50", float("nan")):.3f}'
        f'   (segm AP {metrics.get("coco/segm_mAP", float("nan")):.3f})',
        f'drawn predictions:          {drawn} images in {summary["vis_dir"]}',
        f'detection checkpoint:       {summary["detection_checkpoint"]}',
        'time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in timings.items()),
        '=' * 72, '', REAL_COMMAND]
    print('\n'.join(lines), flush=True)


if __name__ == '__main__':
    main()
