#!/usr/bin/env python
"""Fine-tune one checkpoint on the transfer benchmarks (configs/transfer/) and tabulate top-1.

    python tools/transfer_benchmark.py CHECKPOINT [--datasets cifar10 cifar100 flowers102 pets]
        [--toy] [--work-dir DIR] [--cfg-options KEY=VALUE ...]

Prints a markdown table (data set, top-1, the CvT paper's top-1, steps, time) and writes it with
the rows as JSON to <work-dir>/transfer_benchmark.{md,json}. --toy runs every config on the toy
shape set at 64 px for a few dozen steps (a test of the whole path, not a benchmark). The logic
is ``cvt_mm.transfer``.
"""
import argparse

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

from mmengine.config import DictAction

from cvt_mm.transfer import TRANSFER_CONFIGS, render_markdown, run_transfer_benchmark


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Fine-tune a CvT checkpoint with the configs of configs/transfer/ and '
        'print the top-1 table.')
    parser.add_argument('checkpoint', help='checkpoint with backbone.* tensors (e.g. what '
                        'tools/convert_checkpoint.py writes)')
    parser.add_argument('--datasets', nargs='+', choices=sorted(TRANSFER_CONFIGS),
                        default=list(TRANSFER_CONFIGS), help='default: all four')
    parser.add_argument('--toy', action='store_true',
                        help='run on the toy shape set, in seconds (tests the path end to end)')
    parser.add_argument('--work-dir', default='work_dirs/transfer_benchmark',
                        help='runs and the table go here (default: %(default)s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of every config, key=value')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = run_transfer_benchmark(args.checkpoint, args.datasets, args.work_dir, args.toy,
                                     args.cfg_options)
    print(render_markdown(results, args.toy))


if __name__ == '__main__':
    main()
