#!/usr/bin/env python
"""Evaluate a checkpoint on the test set of a classification, detection or segmentation config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch] [--show-dir DIR]

Prints one "metric: value" line per metric. --show-dir saves the images with the predictions
drawn (mmdet, mmseg, mmpretrain visualization hooks).
"""
import argparse

from _cli import add_runner_arguments, parse_runner_args, quiet_runner_logger

from cvt_mm.engine import build_runner, enable_visualization, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate an mmpretrain, mmdet or mmseg checkpoint on the test set of a '
        'config.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_runner_arguments(parser)
    parser.add_argument('--show-dir', help='save images with the predictions drawn here')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    runner = quiet_runner_logger(build_runner(cfg))
    metrics = runner.test()
    if runner.rank == 0:
        print('\n'.join(f'{name}: {value}' for name, value in metrics.items()))


if __name__ == '__main__':
    main()
