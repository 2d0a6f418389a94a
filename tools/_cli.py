"""What the command lines in tools/ share (not a command itself).

Importing this module first quiets third-party deprecation notices that every run would
otherwise print before anything useful, and that a user can do nothing about: setuptools'
"pkg_resources is deprecated" (mmengine and mmcv import it at start-up) and mmengine's own
"FileClient" / "HardDiskBackend will be deprecated" log lines (mmdet's and mmseg's metrics and
hooks construct those classes). cvt_mm's own warnings are never filtered.
"""
import argparse
import logging
import os
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from mmengine.config import DictAction  # noqa: E402  (after the filter: it imports pkg_resources)

LAUNCHERS = ('none', 'pytorch', 'slurm')
# mmengine logs these through the Runner's logger rather than the warnings module.
KNOWN_LIBRARY_LOG_NOTICES = ('"FileClient" will be deprecated in future',
                             '"HardDiskBackend" is the alias of "LocalBackend"')


class KnownLibraryNotices(logging.Filter):
    """Drops the log records of :data:`KNOWN_LIBRARY_LOG_NOTICES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in KNOWN_LIBRARY_LOG_NOTICES)


def quiet_runner_logger(runner):
    """Attach :class:`KnownLibraryNotices` to the Runner's logger; returns the runner."""
    runner.logger.addFilter(KnownLibraryNotices())
    return runner


def dataset_fault_exit(error: Exception, config: str) -> SystemExit:
    """The one-line exit of a tool whose data set is broken (``cvt_mm.datasets.DatasetSetupError``
    names the file or folder), pointing to the command that checks every file; raise it ``from
    error`` so that the original error stays in the chain."""
    return SystemExit(f'error: {error} (every file checked: python tools/check_dataset.py '
                      f'{config})')


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """--work-dir, --cfg-options, --launcher and the launcher's --local-rank."""
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. model.backbone.arch=21 '
        'train_dataloader.batch_size=4; lists as key="[a,b]")')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help="'pytorch' under torchrun (tools/dist_train.sh), 'slurm' under "
                        'srun (tools/slurm_train.sh); both also without GPUs')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, and hand torch.distributed.launch's --local-rank to mmengine as LOCAL_RANK."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
