"""The transfer benchmark: fine-tune one checkpoint with each of configs/transfer/ and tabulate
top-1 (``tools/transfer_benchmark.py`` is a command line over :func:`run_transfer_benchmark`).

The CvT paper reports these four transfers for CvT-13 pretrained on ImageNet-22k;
:data:`PAPER_TOP1` carries its numbers beside ours. ``toy=True`` swaps every data set for the
toy shape set (:mod:`cvt_mm.toy.shapes`, 5 classes) at 64 px with a short schedule, so
the whole path (configs, checkpoint loading, fine-tuning, evaluation, table) runs in seconds.
"""
import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .apis.model_zoo import config_dir
from .checkpoint.key_mapping import infer_arch
from .engine import build_runner, load_config
from .toy.shapes import SHAPE_CLASSES, ensure_toy_set
from .toy.shrinking import shrink_config

# Data set name -> its config under configs/transfer/.
TRANSFER_CONFIGS: Dict[str, str] = {
    'cifar10': 'transfer/cvt13_cifar10.py',
    'cifar100': 'transfer/cvt13_cifar100.py',
    'flowers102': 'transfer/cvt13_flowers102.py',
    'pets': 'transfer/cvt13_pets.py',
}
# CvT-13 top-1 (%) in the CvT paper's transfer table (ImageNet-22k pretraining, 384x384
# fine-tuning), as quoted in issue 14 and docs/checkpoints.md.
PAPER_TOP1: Dict[str, float] = {'cifar10': 98.83, 'cifar100': 91.11, 'flowers102': 98.39,
                                'pets': 94.26}
TOP1_KEY = 'accuracy/top1'

# Toy runs: image size, schedule and an lr for SGD without the paper's 512-image batches.
TOY_IMAGE_SIZE = 64
TOY_STEPS = 60
TOY_BATCH_SIZE = 16
TOY_LR = 0.05
TOY_SET_PARAMS = dict(train_per_class=40, val_per_class=10, seed=0)


@dataclass
class TransferResult:
    """One row of the table."""
    dataset: str
    config: str
    top1: float
    steps: int
    seconds: float
    paper_top1: Optional[float]


def _checkpoint_arch(checkpoint: str) -> dict:
    """The CvT arch of a checkpoint with ``backbone.*`` tensors (converted or trained)."""
    loaded = torch.load(checkpoint, map_location='cpu', weights_only=True)
    meta = loaded.get('meta') or {}
    if isinstance(meta.get('arch'), dict):
        return dict(meta['arch'])
    state_dict = loaded.get('state_dict', loaded)
    return dict(infer_arch(state_dict)['arch'])


def apply_toy_settings(cfg, checkpoint: str, data_root: Path) -> None:
    """Turn a transfer config into a seconds-long run on the toy shape set (in place).

    The model keeps the config's classifier, loss and init from ``checkpoint`` (its arch is
    read off the checkpoint); data, image size, batch, schedule and lr change.
    """
    num_classes = len(SHAPE_CLASSES)
    arch = _checkpoint_arch(checkpoint)
    cfg.model.backbone.arch = arch
    cfg.model.head.update(num_classes=num_classes, in_channels=arch['embed_dims'][-1])
    # Images come from files (BGR), whatever the real set's loader.
    cfg.data_preprocessor.update(num_classes=num_classes, to_rgb=True)
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        transforms = [copy.deepcopy(step) for step in cfg[loader].dataset.pipeline
                      if step['type'] != 'LoadImageFromFile']
        cfg[loader] = dict(
            batch_size=TOY_BATCH_SIZE,
            sampler=dict(type='DefaultSampler', shuffle=split == 'train'),
            dataset=dict(type='CustomDataset', data_root=str(data_root),
                         ann_file=f'meta/{split}.txt', data_prefix=split,
                         metainfo=dict(classes=SHAPE_CLASSES),
                         pipeline=[dict(type='LoadImageFromFile'), *transforms]))
    # The transfer configs' sizes are 384 px; test_dataloader becomes val's below.
    shrink_config(cfg, size_factor=TOY_IMAGE_SIZE / 384, num_workers=0)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = dict(type='Accuracy', topk=(1, ))
    cfg.test_evaluator = cfg.val_evaluator
    cfg.optim_wrapper.optimizer.lr = TOY_LR
    cfg.auto_scale_lr = dict(enable=False)
    warmup = TOY_STEPS // 10
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=warmup,
             end=TOY_STEPS),
    ]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=TOY_STEPS, val_interval=TOY_STEPS)
    cfg.default_hooks.logger.interval = 10
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)


def run_transfer(dataset: str, checkpoint: str, work_dir: Path, toy: bool = False,
                 toy_data_root: Optional[Path] = None,
                 cfg_options: Optional[dict] = None) -> TransferResult:
    """Fine-tune ``checkpoint`` with the transfer config of ``dataset`` and evaluate it.

    Args:
        dataset (str): A key of :data:`TRANSFER_CONFIGS`.
        checkpoint (str): A checkpoint with ``backbone.*`` tensors (tools/convert_checkpoint.py
            output or a training checkpoint); only the backbone is loaded.
        work_dir (Path): The run's work directory.
        toy (bool): Run on the toy shape set instead (see :func:`apply_toy_settings`).
            Defaults to False.
        toy_data_root (Path, optional): The toy ImageNet-style set; needed with ``toy``.
            Defaults to None.
        cfg_options (dict, optional): Config overrides, as ``--cfg-options``. Defaults to None.

    Returns:
        TransferResult: top-1 (%), steps, wall-clock seconds of training and evaluation.
    """

    relative = TRANSFER_CONFIGS[dataset]
    cfg = load_config(str(config_dir() / relative), work_dir=str(work_dir))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint),
                                       prefix='backbone.')
    if toy:
        apply_toy_settings(cfg, str(checkpoint), toy_data_root)
    cfg.randomness = dict(seed=0)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    shrink_config(cfg, run_name=f'transfer_{dataset}')  # a Runner of its own in this process

    start = time.perf_counter()
    runner = build_runner(cfg)
    runner.train()
    loop = cfg.train_cfg
    steps = loop['max_iters']
    validated_last = (steps % loop.get('val_interval', steps + 1) == 0
                      and loop.get('val_begin', 1) <= steps)
    if validated_last:
        top1 = runner.message_hub.get_scalar(f'val/{TOP1_KEY}').current()
    else:
        top1 = runner.val()[TOP1_KEY]
    seconds = time.perf_counter() - start
    return TransferResult(dataset, f'configs/{relative}', float(top1), int(steps), seconds,
                          PAPER_TOP1.get(dataset))


def run_transfer_benchmark(checkpoint: str, datasets: Sequence[str] = tuple(TRANSFER_CONFIGS),
                           work_dir: str = 'work_dirs/transfer_benchmark', toy: bool = False,
                           cfg_options: Optional[dict] = None) -> List[TransferResult]:
    """Run :func:`run_transfer` for each data set and write the table.

    ``<work_dir>/transfer_benchmark.json`` (the rows) and ``transfer_benchmark.md`` (the
    markdown table) are written when all runs are done.

    Args:
        checkpoint (str): The pretrained checkpoint every run starts from.
        datasets (Sequence[str]): Keys of :data:`TRANSFER_CONFIGS`. Defaults to all four.
        work_dir (str): One subdirectory per data set, and the table. Defaults to
            'work_dirs/transfer_benchmark'.
        toy (bool): Run on the toy shape set (generated under ``<work_dir>/data``).
            Defaults to False.
        cfg_options (dict, optional): Overrides applied to every config. Defaults to None.

    Returns:
        List[TransferResult]: One row per data set, in the order given.
    """
    unknown = [name for name in datasets if name not in TRANSFER_CONFIGS]
    if unknown:
        raise ValueError(f'unknown transfer data sets {unknown}; choose from '
                         f'{sorted(TRANSFER_CONFIGS)}')
    root = Path(work_dir)
    toy_data_root = None
    if toy:
        ensure_toy_set(root / 'data', 'imagenet', TOY_SET_PARAMS)
        toy_data_root = root / 'data' / 'imagenet'
    results = [run_transfer(name, checkpoint, root / name, toy, toy_data_root, cfg_options)
               for name in datasets]
    root.mkdir(parents=True, exist_ok=True)
    (root / 'transfer_benchmark.json').write_text(json.dumps(
        dict(checkpoint=str(checkpoint), toy=toy, results=[asdict(row) for row in results]),
        indent=2) + '\n')
    (root / 'transfer_benchmark.md').write_text(render_markdown(results, toy) + '\n')
    return results


def render_markdown(results: Sequence[TransferResult], toy: bool = False) -> str:
    """The table: data set, our top-1, the paper's, steps and time."""
    paper = 'paper top-1 (CvT-13)' if not toy else 'paper top-1 (real set, not comparable)'
    lines = [f'| dataset | top-1 (%) | {paper} | steps | time (s) |',
             '|---|---|---|---|---|']
    for row in results:
        reference = f'{row.paper_top1:.2f}' if row.paper_top1 is not None else '-'
        lines.append(f'| {row.dataset} | {row.top1:.2f} | {reference} | {row.steps} | '
                     f'{row.seconds:.1f} |')
    return '\n'.join(lines)
