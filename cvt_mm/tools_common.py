"""What tools/train.py and tools/test.py share, for mmpretrain, mmdet and mmseg configs alike.

The task library is read from the config's ``default_scope`` ('mmpretrain', 'mmdet' or
'mmseg'); its modules are registered and its scope made current, as the libraries' own tools
get from their configs, and an mmengine ``Runner`` does the rest.

Two things differ from the libraries' tools:

* ``--launcher pytorch`` also works without a GPU. mmengine's pytorch launcher calls
  ``torch.cuda.set_device`` and its default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, both
  of which fail on a CPU-only machine. There we start a gloo process group ourselves (the Runner
  then skips its own) and wrap the model with ``device_ids=None``.
* ``--amp`` refuses to run without a GPU, with a message saying so. mmengine's
  ``AmpOptimWrapper`` only supports GPU-like devices, and bf16 autocast on a CPU without bf16
  matrix units is typically slower than float32, so a CPU fallback would gain nothing.
"""
import argparse
import importlib
import logging
import os
import os.path as osp
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                             is_npu_available)
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

TASK_SCOPES = ('mmpretrain', 'mmdet', 'mmseg')
LAUNCHERS = ('none', 'pytorch')


# ----------------------------------------------------------------------------- arguments
def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. model.backbone.arch=21 '
        'train_dataloader.batch_size=4; lists as key="[a,b]")')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help="'pytorch' under torchrun (see tools/dist_train.sh)")
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train an mmpretrain, mmdet or mmseg model from a config.')
    parser.add_argument('config', help='config file')
    _add_common_arguments(parser)
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a value from the latest checkpoint in the '
        'work directory')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision training (needs a GPU)')
    return parser


def build_test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate an mmpretrain, mmdet or mmseg checkpoint on the test set of a '
        'config.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    _add_common_arguments(parser)
    parser.add_argument('--show-dir', help='save images with the predictions drawn here')
    return parser


# ----------------------------------------------------------------------------- config
def load_config(config: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None, launcher: str = 'none') -> Config:
    """Read a config, apply ``--cfg-options`` and settle the work directory.

    Work directory precedence, as in the libraries' tools: ``work_dir`` argument, then the
    config's ``work_dir``, then ``./work_dirs/<config name>``.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def task_scope(cfg: Config) -> str:
    """The task library a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TASK_SCOPES:
        raise ValueError(f'config default_scope is {scope!r}; expected one of {TASK_SCOPES} '
                         '(inherit the default_runtime.py of mmpretrain, mmdet or mmseg)')
    return scope


def register_task_modules(scope: str) -> None:
    """Register the task library's modules and make its scope the current default scope."""
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=True)


def replace_sync_bn(node):
    """Turn every ``type='SyncBN'`` in a config tree into ``'BN'`` (in place); returns the count.

    torch's SyncBatchNorm only synchronises CUDA-like tensors and raises on CPU ones.
    """
    replaced = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            replaced += 1
        for value in node.values():
            replaced += replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replaced += replace_sync_bn(value)
    return replaced


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``--launcher pytorch`` on a machine without CUDA; returns whether it did.

    Starts a gloo process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT), so that the Runner, finding one, does not run mmengine's launcher with its
    ``torch.cuda.set_device``; makes the DDP wrapper CPU-capable (``device_ids=None``); and
    replaces SyncBN, which torch cannot run on CPU tensors, with per-process BN.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper_cfg = cfg.get('model_wrapper_cfg') or ConfigDict(
        type='MMDistributedDataParallel',
        # mmengine's defaults for its own wrapper.
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg['device_ids'] = None  # CPU modules take no device ids
    cfg.model_wrapper_cfg = wrapper_cfg
    replaced = replace_sync_bn(cfg.model)
    if replaced:
        print_log(f'CPU distributed training: {replaced} SyncBN layer config(s) replaced by BN',
                  logger='current', level=logging.WARNING)
    return True


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mmengine's AMP wrapper with dynamic loss scaling."""
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise SystemExit('--amp needs a GPU (CUDA, NPU, MLU or MUSA): mmengine\'s '
                         'AmpOptimWrapper does not run on CPU. Train without --amp here.')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config', logger='current',
                  level=logging.WARNING)
        return
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def apply_resume(cfg: Config, resume: Optional[str]) -> None:
    """``'auto'``: the latest checkpoint in the work directory; a path: that checkpoint."""
    if resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume


def enable_visualization(cfg: Config, scope: str, show_dir: str) -> None:
    """Make the task's visualization hook draw every test prediction into ``show_dir``.

    Each library's test.py does this its own way, and so do we: mmdet's hook takes an output
    directory (relative ones are under <work_dir>/<timestamp>/); mmseg's draws through the
    visualizer, whose save directory receives ``vis_data/vis_image/``; mmpretrain's hook has to
    be enabled and given ``out_dir``. The interval is set to 1 where the hook's default would
    skip images (mmseg 50, mmpretrain 5000; mmpretrain's test.py also sets 1).
    """
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs a visualization hook in default_hooks; the task '
                         "libraries' default_runtime.py configs define one")
    hook = hooks['visualization']
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=show_dir)
    elif scope == 'mmseg':
        hook.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    else:
        hook.update(enable=True, out_dir=show_dir, interval=1)


def build_runner(cfg: Config) -> Runner:
    """Register the task's modules, prepare CPU DDP if needed and build the Runner."""
    register_task_modules(task_scope(cfg))
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


# ----------------------------------------------------------------------------- entry points
def _set_local_rank(local_rank: int) -> None:
    # The launcher reads LOCAL_RANK; torch.distributed.launch passes it as an argument only.
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def run_train(argv: Optional[Sequence[str]] = None) -> Runner:
    """tools/train.py: train from a config; returns the finished Runner."""
    args = build_train_parser().parse_args(argv)
    _set_local_rank(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg)
    apply_resume(cfg, args.resume)
    runner = build_runner(cfg)
    runner.train()
    return runner


def run_test(argv: Optional[Sequence[str]] = None) -> dict:
    """tools/test.py: evaluate a checkpoint; prints the metrics (rank 0) and returns them."""
    args = build_test_parser().parse_args(argv)
    _set_local_rank(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, task_scope(cfg), args.show_dir)
    runner = build_runner(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print(format_metrics(metrics))
    return metrics


def format_metrics(metrics: dict) -> str:
    """One ``name: value`` line per metric."""
    return '\n'.join(f'{name}: {value}' for name, value in metrics.items())
