#!/usr/bin/env python
"""Evaluate a checkpoint on the test set of a classification, detection or segmentation config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm] [--show-dir DIR] [--tta]

Prints one "metric: value" line per metric. --show-dir saves the images with the predictions
drawn (mmdet, mmseg, mmpretrain visualization hooks). --tta evaluates with the config's test-time
augmentation (tta_model and tta_pipeline: multi-scale + flip for the ADE20K UperNets). A
broken test set (a missing folder, a missing or unparsable annotation file, no samples) ends the
run with one line naming it.
"""
import argparse

from _cli import add_runner_arguments, dataset_fault_exit, parse_runner_args, quiet_runner_logger

from cvt_mm.datasets import DatasetSetupError
from cvt_mm.engine import (
    build_runner,
    enable_visualization,
    end_worker_process,
    load_config,
    shutdown_distributed,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate an mmpretrain, mmdet or mmseg checkpoint on the test set of a '
        'config.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_runner_arguments(parser)
    parser.add_argument('--show-dir', help='save images with the predictions drawn here')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_pipeline and tta_model")
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    if args.tta:
        # As mmseg's and mmdet's tools/test.py: the TTA model wraps the config's model.
        if cfg.get('tta_model') is None or cfg.get('tta_pipeline') is None:
            raise SystemExit(f'--tta needs tta_model and tta_pipeline in {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    runner = quiet_runner_logger(build_runner(cfg))
    try:
        metrics = runner.test()
    except DatasetSetupError as error:
        raise dataset_fault_exit(error, args.config) from error
    if runner.rank == 0:
        print('\n'.join(f'{name}: {value}' for name, value in metrics.items()))
    del runner  # its model holds the process group
    if shutdown_distributed():
        end_worker_process()


if __name__ == '__main__':
    main()
