"""Shrinking a config for a toy run: its data re-rooted, its image sizes scaled, its schedule
shortened.

One function for the three places that make small runs of real or toy configs: the CPU
quickstart (:mod:`cvt_mm.toy.quickstart`), the transfer benchmark's ``--toy`` runs
(:mod:`cvt_mm.transfer`) and the tests' toy copies of the dense configs.
"""
import uuid
from typing import Optional

from mmengine.config import Config

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
# Pipeline keys that hold image sizes: Resize's scale, RandomChoiceResize's scales,
# RandomCrop's and CenterCrop's crop_size.
PIPELINE_SIZE_KEYS = ('scale', 'scales', 'crop_size')


def scale_size(size, factor: float):
    """An image size (a number or a nested tuple/list of numbers) times ``factor``, rounded,
    at least 1."""
    if isinstance(size, (int, float)):
        return max(1, round(size * factor))
    return type(size)(scale_size(value, factor) for value in size)


def scale_pipeline_sizes(node, factor: float) -> None:
    """Multiply every image size (:data:`PIPELINE_SIZE_KEYS`) in a pipeline config tree by
    ``factor``, in place, keeping the pipeline's structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PIPELINE_SIZE_KEYS:
                node[key] = scale_size(value, factor)
            else:
                scale_pipeline_sizes(value, factor)
    elif isinstance(node, list):
        for value in node:
            scale_pipeline_sizes(value, factor)


def set_data_root(cfg: Config, root: str) -> None:
    """Point the dataloaders' data sets and the evaluators' annotation files at ``root``.

    An evaluator's ``ann_file`` under the config's ``data_root`` moves with it (COCO metrics
    read the annotations themselves).
    """
    old = cfg.get('data_root')
    for loader in DATALOADERS:
        if loader in cfg:
            cfg[loader]['dataset']['data_root'] = root
    for evaluator in EVALUATORS:
        evaluator_cfg = cfg.get(evaluator)
        ann_file = evaluator_cfg.get('ann_file') if isinstance(evaluator_cfg, dict) else None
        if old and ann_file and ann_file.startswith(old):
            evaluator_cfg['ann_file'] = root + ann_file[len(old):]
    cfg.data_root = root


def set_epochs(cfg: Config, epochs: int) -> None:
    """Shorten or lengthen an epoch-based schedule to ``epochs``, keeping its shape.

    Validation and checkpointing move to the last epoch; epoch-based schedulers that ran to
    the end now end at ``epochs`` and their milestones are scaled (iteration-based warm-ups
    are left as they are).
    """
    old = cfg.train_cfg.max_epochs
    if epochs == old:
        return
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.checkpoint.interval = epochs
    for scheduler in cfg.get('param_scheduler') or []:
        if not scheduler.get('by_epoch', True):
            continue
        if scheduler.get('end', old) >= old:
            scheduler.end = epochs
        if 'milestones' in scheduler:
            scheduler.milestones = sorted(
                {max(1, min(epochs - 1, round(m * epochs / old))) for m in scheduler.milestones})


def set_iterations(cfg: Config, iterations: int) -> None:
    """Shorten an iteration-based schedule to ``iterations``, validating and checkpointing at
    the end. The schedulers are left as they are: the run sees their first steps."""
    cfg.train_cfg.update(max_iters=iterations, val_interval=iterations)
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint is not None:
        checkpoint.interval = iterations


def shrink_config(cfg: Config, data_root: Optional[str] = None,
                  size_factor: Optional[float] = None, length: Optional[int] = None,
                  num_workers: Optional[int] = None, run_name: Optional[str] = None) -> Config:
    """Make ``cfg`` a small run, in place; returns it.

    Args:
        cfg (Config): A training config (mmpretrain, mmdet or mmseg).
        data_root (str, optional): Re-root the data there (:func:`set_data_root`).
            Defaults to None (the config's).
        size_factor (float, optional): Multiply every pipeline image size, an mmseg data
            preprocessor's ``size`` and its batch augments' ``size`` by this. Defaults to None
            (sizes kept).
        length (int, optional): Epochs of an epoch-based loop (:func:`set_epochs`) or
            iterations of an iteration-based one (:func:`set_iterations`).
            Defaults to None (the config's).
        num_workers (int, optional): Dataloader workers of every loader; 0 also turns
            ``persistent_workers`` off. Defaults to None (the config's).
        run_name (str, optional): The prefix of a fresh ``experiment_name``, also the
            visualizer's name: Runners built in one process must not share their logger or
            visualizer, which mmengine looks up by name. Defaults to None (names kept).
    """
    if data_root is not None:
        set_data_root(cfg, str(data_root))
    if size_factor is not None:
        for loader in DATALOADERS:
            if loader in cfg:
                scale_pipeline_sizes(cfg[loader]['dataset']['pipeline'], size_factor)
        preprocessor = cfg.get('model', {}).get('data_preprocessor') or {}
        # mmseg's crop size, and the fixed-size padding of mmdet's batch augments
        # (Mask2Former's large-scale jitter pads every batch to 1024x1024).
        for node in [preprocessor] + list(preprocessor.get('batch_augments') or []):
            if node.get('size') is not None:
                node['size'] = scale_size(node['size'], size_factor)
    if length is not None:
        if 'max_iters' in cfg.train_cfg:
            set_iterations(cfg, length)
        else:
            set_epochs(cfg, length)
    if num_workers is not None:
        for loader in DATALOADERS:
            if loader in cfg:
                cfg[loader].update(num_workers=num_workers,
                                   persistent_workers=num_workers > 0 and cfg[loader].get(
                                       'persistent_workers', False))
    if run_name is not None:
        cfg.experiment_name = f'{run_name}_{uuid.uuid4().hex[:8]}'
        if 'visualizer' in cfg:
            cfg.visualizer.name = cfg.experiment_name
    return cfg
