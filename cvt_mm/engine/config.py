"""Config preparation shared by the tools and by Python callers, for all three task libraries.

The task library is read from the config's ``default_scope`` (:mod:`cvt_mm.tasks`), as the
libraries' own tools get it from their configs.
"""
import glob
import logging
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
from mmengine.logging import print_log

from cvt_mm.tasks import task_of_config

from .elastic import resume_after_restart


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
    """The task library a config belongs to, from its ``default_scope``
    (:func:`cvt_mm.tasks.task_of_config`)."""
    return task_of_config(cfg).scope


def enable_amp(cfg: Config, dtype: str = 'float16') -> None:
    """Switch the optimizer wrapper to mmengine's AMP wrapper.

    float16 gets dynamic loss scaling: its largest value is 65504, so large activations and
    gradients overflow to inf (the NaN losses CvT users report with AMP) unless the loss is
    scaled into range and the overflowing steps skipped. bfloat16 has float32's exponent range
    and needs no scaling (a static scale of 1), at the price of 8 bits of mantissa.

    Refused without a GPU: mmengine's ``AmpOptimWrapper`` only supports GPU-like devices.

    Args:
        cfg (Config): The config, changed in place.
        dtype (str): 'float16' or 'bfloat16'. Defaults to 'float16'.
    """
    if dtype not in ('float16', 'bfloat16'):
        raise ValueError(f"AMP dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise SystemExit('--amp needs a GPU (CUDA, NPU, MLU or MUSA): mmengine\'s '
                         'AmpOptimWrapper does not run on CPU. Train without --amp here.')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config', logger='current',
                  level=logging.WARNING)
        return
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic' if dtype == 'float16' else 1.0)


def enable_auto_scale_lr(cfg: Config) -> None:
    """Turn on mmengine's linear learning-rate scaling (``auto_scale_lr.enable``), as mmdet's
    ``tools/train.py --auto-scale-lr`` does: the Runner multiplies the config's learning rates
    by the total batch (processes x ``train_dataloader.batch_size``) over
    ``auto_scale_lr.base_batch_size``, the batch the rates were set for.

    Args:
        cfg (Config): The config, changed in place; it must define
            ``auto_scale_lr.base_batch_size``, else SystemExit names the config.
    """
    if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
        raise SystemExit(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                         f'{cfg.filename or "the config"}: the total batch size its learning '
                         'rate is set for, e.g. auto_scale_lr = dict(base_batch_size=16)')
    cfg.auto_scale_lr.enable = True


def apply_resume(cfg: Config, resume: Optional[str]) -> None:
    """``'auto'``: the latest checkpoint in the work directory, or, when it holds none, a
    fresh start; a path: that checkpoint.

    A process that torchrun restarted, or a requeued Slurm job, resumes from the latest
    checkpoint in the work directory (:func:`~cvt_mm.engine.elastic.resume_after_restart`).
    """
    work_dir = cfg.get('work_dir')
    latest = latest_checkpoint(work_dir) if work_dir else None
    resume = resume_after_restart(resume, latest)
    if resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume
    if resume != 'auto' or not work_dir:
        return
    if latest is None:
        print_log(f'--resume: no checkpoint in {work_dir}; training starts from the '
                  'beginning', logger='current', level=logging.WARNING)
        cfg.resume = False
    else:
        cfg.load_from = latest


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``last_checkpoint`` in ``work_dir`` names; if that file is missing or
    names no file, the newest ``*.pth`` of ``work_dir``; None when there is none."""
    named = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(named):
        with open(named) as stream:
            path = stream.read().strip()
        if path and (osp.isfile(path) or '://' in path):  # remote backends: trust the name
            return path
    candidates = glob.glob(osp.join(work_dir, '*.pth'))
    return max(candidates, key=osp.getmtime) if candidates else None


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Make the task's visualization hook draw every test prediction into ``show_dir``.

    Each library's test.py does this its own way, and so do we: the hook's settings and the
    key of the drawings' folder are the task's (:attr:`cvt_mm.tasks.Task.draw_test_images`,
    :attr:`~cvt_mm.tasks.Task.drawings_dir`): mmdet's hook takes an output directory, mmseg's
    draws through the visualizer, mmpretrain's hook has to be enabled and given ``out_dir``.
    """
    task = task_of_config(cfg)
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs a visualization hook in default_hooks; the task '
                         "libraries' default_runtime.py configs define one")
    hooks['visualization'].update(dict(task.draw_test_images))
    cfg.merge_from_dict({task.drawings_dir: show_dir})
