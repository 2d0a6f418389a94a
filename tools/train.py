#!/usr/bin/env python
"""Train a classification (mmpretrain), detection (mmdet) or segmentation (mmseg) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm]
        [--amp [float16|bfloat16]] [--auto-scale-lr] [--preempt-signals TERM,USR1]
        [--stock-loop]

The task library comes from the config's default_scope. Several processes or machines (also on
CPU): tools/dist_train.sh, tools/slurm_train.sh. Checkpoints hold the exact position and are
written atomically, so that --resume continues exactly where the run stopped, also inside an
epoch (--stock-loop: mmengine's own loops instead, without that). On a preemption signal
(SIGTERM, SIGUSR1) every process stops after the same iteration, saves it and exits with status
75; a second signal exits at once (docs/long_runs.md).
A missing data folder, a missing or unparsable annotation file or an empty data set ends the run
before training with one line naming it (tools/check_dataset.py then checks every file).
"""
import argparse
import sys

from _cli import add_runner_arguments, dataset_fault_exit, parse_runner_args, quiet_runner_logger

from cvt_mm.datasets import DatasetSetupError
from cvt_mm.engine import (
    PREEMPTED_EXIT_STATUS,
    Preempted,
    apply_resume,
    build_runner,
    enable_amp,
    enable_auto_scale_lr,
    enable_faithful_resume,
    enable_preemption,
    end_worker_process,
    load_config,
    shutdown_distributed,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmpretrain, mmdet or mmseg model from a config.')
    parser.add_argument('config', help='config file')
    add_runner_arguments(parser)
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the latest checkpoint in the '
        'work directory (starting from the beginning when there is none)')
    parser.add_argument(
        '--amp', nargs='?', const='float16', choices=('float16', 'bfloat16'),
        help='mixed precision training (needs a GPU). For CvT, bfloat16 on GPUs with fast '
        'bfloat16 (A100, H100, other Ampere or newer): its float32-wide exponent does not '
        'overflow where float16 does (attention logits, large activations), so no loss '
        'scaling is needed. float16 (the default without a value) with dynamic loss scaling, '
        'which skips the steps that overflow, on older GPUs without fast bfloat16 (V100, T4). '
        'Not run on a GPU by this project (docs/long_runs.md)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help="scale the learning rate by the total batch (processes x batch size) over the "
        "config's auto_scale_lr.base_batch_size, as mmdet's --auto-scale-lr")
    parser.add_argument(
        '--preempt-signals', metavar='SIGNALS',
        help='comma-separated signals that save the position and exit with status '
        f'{PREEMPTED_EXIT_STATUS} (default: the config\'s PreemptionHook, else TERM,USR1; '
        '"none": off)')
    parser.add_argument(
        '--stock-loop', action='store_true',
        help="mmengine's own train loops and data path instead of cvt_mm's faithful resume "
        '(no per-iteration reseeding; docs/long_runs.md, "Resuming: bit for bit"). What a '
        'resume (--resume, after a preemption) then loses: an epoch-based run trains the '
        'interrupted epoch again from its first batch, an iteration-based one loads and drops '
        'the batches already trained on, the random draws after the resume (augmentation, '
        'dropout, RoI sampling) are not those of the uninterrupted run, and checkpoints are '
        'written in place, so a process killed while writing one can leave it truncated')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg, dtype=args.amp)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if not args.stock_loop:
        enable_faithful_resume(cfg)
    enable_preemption(cfg, args.preempt_signals)
    apply_resume(cfg, args.resume)
    status = 0
    try:
        quiet_runner_logger(build_runner(cfg)).train()
    except Preempted as stop:
        print(f'preempted: {stop}', file=sys.stderr, flush=True)
        status = PREEMPTED_EXIT_STATUS
    except DatasetSetupError as error:
        raise dataset_fault_exit(error, args.config) from error
    if shutdown_distributed():
        end_worker_process(status)
    return status


if __name__ == '__main__':
    sys.exit(main())
