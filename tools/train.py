#!/usr/bin/env python
"""Train a classification (mmpretrain), detection (mmdet) or segmentation (mmseg) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch] [--amp]

The task library comes from the config's default_scope. Several processes (also on CPU):
tools/dist_train.sh.
"""
import argparse

from _cli import add_runner_arguments, parse_runner_args, quiet_runner_logger

from cvt_mm.engine import apply_resume, build_runner, enable_amp, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmpretrain, mmdet or mmseg model from a config.')
    parser.add_argument('config', help='config file')
    add_runner_arguments(parser)
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the latest checkpoint in the '
        'work directory')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision training (needs a GPU)')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg)
    apply_resume(cfg, args.resume)
    quiet_runner_logger(build_runner(cfg)).train()


if __name__ == '__main__':
    main()
