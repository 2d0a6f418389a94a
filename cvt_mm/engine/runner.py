"""Building an mmengine Runner for an mmpretrain, mmdet or mmseg config."""
from typing import Optional

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cvt_mm.datasets.checks import (
    SPLITS,
    DatasetSetupError,
    built_dataset_problem,
    dataset_setup_problem,
)
from cvt_mm.tasks import task_of_config, task_of_scope

from .distributed import setup_cpu_distributed


def register_task_modules(scope: str) -> None:
    """Register the task library's modules and make its scope the current default scope
    (:meth:`cvt_mm.tasks.Task.register_modules`)."""
    task_of_scope(scope).register_modules()


def build_runner(cfg: Config) -> Runner:
    """Register the config's task modules, prepare CPU DDP if needed and build the Runner,
    whose broken data sets are named (:func:`name_dataset_faults`)."""
    task_of_config(cfg).register_modules()
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return name_dataset_faults(RUNNERS.build(cfg))
    return name_dataset_faults(Runner.from_cfg(cfg))


def dataloader_split(runner: Runner, dataloader: dict) -> Optional[str]:
    """Which of 'train', 'val' and 'test' the dataloader config ``dataloader`` is: the one the
    runner holds as this very object (what its loops pass on), else the first equal one."""
    held = {split: getattr(runner, f'_{split}_dataloader', None) for split in SPLITS}
    for split in SPLITS:
        if held[split] is dataloader:
            return split
    for split in SPLITS:
        if runner.cfg.get(f'{split}_dataloader') == dataloader:
            return split
    return None


def name_dataset_faults(runner: Runner) -> Runner:
    """Make the runner's dataloaders report a broken data set in one line naming the file.

    mmengine's loops build their dataloaders through ``runner.build_dataloader``, which this
    wraps on this runner alone. A data set that fails to build because of one of its files
    (a truncated or missing annotation file, for which mmdet's own error names no file: see
    :func:`~cvt_mm.datasets.checks.dataset_setup_problem`), or that builds with a folder missing
    or without samples (:func:`~cvt_mm.datasets.checks.built_dataset_problem`: mmseg opens the
    label maps only sample by sample), raises :class:`~cvt_mm.datasets.checks.DatasetSetupError`,
    chained to the original error. Any other failure propagates unchanged.

    Args:
        runner (Runner): The runner, changed in place.

    Returns:
        Runner: ``runner``.
    """
    build = runner.build_dataloader

    def build_dataloader(dataloader, *args, **kwargs):
        if not isinstance(dataloader, dict):
            return build(dataloader, *args, **kwargs)
        try:
            built = build(dataloader, *args, **kwargs)
        except Exception as error:
            problem = dataset_setup_problem(dataloader['dataset'])
            if problem is None:
                raise
            raise DatasetSetupError(problem, dataloader_split(runner, dataloader)) from error
        problem = built_dataset_problem(built.dataset)
        if problem is not None:
            raise DatasetSetupError(problem, dataloader_split(runner, dataloader))
        return built

    runner.build_dataloader = build_dataloader
    return runner
