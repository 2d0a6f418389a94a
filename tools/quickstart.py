#!/usr/bin/env python
"""CPU quickstart: the whole CvT pipeline in small, on synthetic shape data, in minutes.

    python tools/quickstart.py [--work-dir work_dirs/quickstart] [--seed 0] [--skip-pretrain]

Generates the toy data sets, pretrains a classifier of the demo CvT on toy shapes, trains a CvT
Mask R-CNN from it, evaluates it (COCO bbox and segm) and draws its predictions, then prints a
summary and the command that trains the real CvT-13 Mask R-CNN on COCO. The stages are
``cvt_mm.toy.quickstart``; what it reaches: docs/quickstart.md.
"""
import argparse
import os

import _cli

import torch
from mmengine.config import DictAction

from cvt_mm.toy.quickstart import (
    DEFAULT_DATA_ROOT,
    DEFAULT_WORK_DIR,
    format_summary,
    run_quickstart,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Pretrain the demo CvT on toy shapes, train Mask R-CNN from it, evaluate '
        'and draw the predictions (CPU, minutes).')
    parser.add_argument('--work-dir', default=DEFAULT_WORK_DIR,
                        help='checkpoints, logs, metrics.json and vis/ go here')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='toy data sets (generated here if absent)')
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--skip-pretrain', action='store_true',
                        help='skip the classification stage; the detector starts from '
                        '--pretrained, else from the checkpoint an earlier run left in '
                        '<work-dir>/pretrain/, else from scratch')
    parser.add_argument('--pretrained', help='classifier checkpoint to start the detector from')
    # Sizes, for tests and experiments; the defaults are the quickstart of docs/quickstart.md.
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


def main(argv=None):
    args = parse_args(argv)
    # One compute thread per core; on a CPU shared with other jobs --threads 1 is the robust
    # choice (spinning OpenMP threads that fight other load slow every step).
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    summary = run_quickstart(
        args.work_dir, args.data_root, seed=args.seed, skip_pretrain=args.skip_pretrain,
        pretrained=args.pretrained, pretrain_epochs=args.pretrain_epochs,
        det_epochs=args.det_epochs, num_train=args.num_train, num_val=args.num_val,
        cls_per_class=args.cls_per_class, cfg_options=args.cfg_options,
        prepare_runner=_cli.quiet_runner_logger)
    print(format_summary(summary), flush=True)
    return summary


if __name__ == '__main__':
    main()
