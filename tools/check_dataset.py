#!/usr/bin/env python
"""Read every image and annotation a config's data sets reference and report what is broken.

    python tools/check_dataset.py CONFIG [--cfg-options KEY=VALUE ...] [--splits train val test]

One line per fault, naming the file (``[split] FILE: KIND: DETAIL``), then a summary line.
Exits with 1 when anything is wrong, 0 when the data is clean. The checks are
:mod:`cvt_mm.datasets.checks`; docs/long_runs.md lists what they report.
"""
import argparse
import sys

from _cli import DictAction

from cvt_mm.datasets.checks import SPLITS, check_config, no_progress, summary_line
from cvt_mm.engine import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check the images and annotations of a config\'s data sets.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. train_dataloader.dataset.data_root=X)')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='which dataloaders\' data sets to check (default: all)')
    return parser.parse_args(argv)


def terminal_progress():
    """A rich progress bar on a terminal; nothing when the output is a file or a pipe."""
    if not sys.stderr.isatty():
        return no_progress
    from rich.console import Console
    from rich.progress import track as rich_track

    def track(iterable, total, description):
        return rich_track(iterable, total=total, description=description, transient=True,
                          console=Console(stderr=True))

    return track


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    results = check_config(cfg, args.splits, terminal_progress())
    for split, problems in results.items():
        for problem in problems:
            print(f'[{split}] {problem}')
    print(summary_line(results))
    return 1 if any(results.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
