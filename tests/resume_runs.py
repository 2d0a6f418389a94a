"""Toy training runs of tools/train.py for the resume, preemption and launcher tests (not a
test module): small configs of the toy Mask R-CNN (epoch loop), UperNet (iteration loop) and
classifier, the commands, and the comparisons of their checkpoints."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from helpers import CONFIG_DIR, TOOLS_DIR
from mmengine.config import Config

from cvt_mm.toy import shapes
from cvt_mm.toy.shrinking import shrink_config

TESTS_DIR = Path(__file__).resolve().parent
DETERMINISTIC = ['randomness.seed=0', 'randomness.deterministic=True']
IMAGE_SIZE = 64


# The runs the resume and preemption tests share: 6 toy images, 3 iterations an epoch.
DETECTION = dict(batch_size=2, max_epochs=2)
SEGMENTATION = dict(batch_size=2, max_iters=6, checkpoint_interval=2)

def make_data(root: Path, num_train: int) -> Path:
    """COCO and ADE20K layouts with ``num_train`` training images, and an ImageNet layout
    with two per class (10)."""
    shapes.make_coco(root / 'coco', num_train=num_train, num_val=1, image_size=IMAGE_SIZE,
                         seed=0)
    shapes.make_ade(root / 'ade', num_train=num_train, num_val=1, image_size=IMAGE_SIZE,
                        seed=0)
    shapes.make_imagenet(root / 'imagenet', train_per_class=2, val_per_class=1, seed=0)
    return root


def toy_run(config: str, data_root: str, length: int, batch_size: int, num_workers: int,
            persistent_workers: bool) -> Config:
    """A configs/toy/ config on IMAGE_SIZE-px toy images, ``length`` epochs or iterations,
    without validation (only the weights are compared), logging every iteration."""
    cfg = Config.fromfile(CONFIG_DIR / 'toy' / config)
    # The toy configs' image side: img_scale's (detection, segmentation) or img_size.
    toy_size = cfg.img_scale[0] if 'img_scale' in cfg else cfg.img_size
    shrink_config(cfg, data_root=data_root, size_factor=IMAGE_SIZE / toy_size,
                  length=length, num_workers=num_workers)
    cfg.train_dataloader.update(batch_size=batch_size,
                                persistent_workers=persistent_workers and num_workers > 0)
    cfg.default_hooks.logger.interval = 1
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    return cfg


def detection_config(data_root: Path, batch_size: int, max_epochs: int, num_workers: int = 2,
                     persistent_workers: bool = True) -> Config:
    """configs/toy/cvt_demo_maskrcnn_toy.py from random weights, a checkpoint every epoch."""
    cfg = toy_run('cvt_demo_maskrcnn_toy.py', f'{data_root}/coco/', max_epochs, batch_size,
                  num_workers, persistent_workers)
    cfg.model.backbone.init_cfg = None
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    return cfg


def classification_config(data_root: Path, batch_size: int, max_epochs: int,
                          num_workers: int = 2, persistent_workers: bool = True) -> Config:
    """configs/toy/cvt_demo_cls_toy.py from random weights (random crops and flips), a
    checkpoint every epoch and a warm-up over the whole run."""
    cfg = toy_run('cvt_demo_cls_toy.py', str(data_root / 'imagenet'), max_epochs, batch_size,
                  num_workers, persistent_workers)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=5 * max_epochs)]
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    return cfg


def segmentation_config(data_root: Path, batch_size: int, max_iters: int,
                        checkpoint_interval: int, num_workers: int = 2,
                        persistent_workers: bool = False) -> Config:
    """configs/toy/cvt_demo_upernet_toy.py from random weights, 64-px crops (an
    InfiniteSampler under an iteration loop), the poly schedule over the whole run."""
    cfg = toy_run('cvt_demo_upernet_toy.py', f'{data_root}/ade/ADEChallengeData2016', max_iters,
                  batch_size, num_workers, persistent_workers)
    cfg.model.backbone.init_cfg = None
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0,
                                end=max_iters, by_epoch=False)]
    cfg.default_hooks.checkpoint.update(interval=checkpoint_interval, by_epoch=False,
                                        max_keep_ckpts=-1)
    return cfg


def add_hook(cfg: Config, **hook) -> Config:
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [hook]
    return cfg


def record_train_path(cfg: Config, out_file: Path) -> Config:
    """``cfg`` with tests/train_path_probe.py's hook, which writes what the run built to
    ``out_file`` (read it with :func:`train_path`)."""
    cfg = copy.deepcopy(cfg)
    imports = list((cfg.get('custom_imports') or {}).get('imports', ['cvt_mm']))
    cfg.custom_imports = dict(imports=imports + ['train_path_probe'],
                              allow_failed_imports=False)
    return add_hook(cfg, type='RecordTrainPathHook', out_file=str(out_file))


def train_path(out_file: Path) -> dict:
    """The train loop, batch sampler, data set and hooks a run recorded, by class name."""
    return json.loads(out_file.read_text())


def dump(cfg: Config, path: Path) -> Path:
    cfg.dump(path)
    return path


def train_env() -> dict:
    paths = [str(TESTS_DIR)] + [p for p in [os.environ.get('PYTHONPATH')] if p]
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
                PYTHONPATH=os.pathsep.join(paths))


def train(config: Path, work_dir: Path, *args: str, processes: int = 1,
          expect: int = 0) -> str:
    """tools/train.py (or tools/dist_train.sh with ``processes``) CONFIG --work-dir WORK_DIR
    ARGS, deterministic; asserts the exit status ``expect``; returns the output."""
    train_args = [str(config), '--work-dir', str(work_dir), *args, '--cfg-options',
                  *DETERMINISTIC]
    if processes == 1:
        command = [sys.executable, str(TOOLS_DIR / 'train.py'), *train_args]
    else:
        command = ['bash', str(TOOLS_DIR / 'dist_train.sh'), train_args[0], str(processes),
                   *train_args[1:]]
    # MAX_RESTARTS=0: torchrun would otherwise restart the group that a signal stopped, and
    # the restart would resume and finish (tests/test_tools/test_preemption_launchers.py).
    result = subprocess.run(command, capture_output=True, text=True,
                            env=dict(train_env(), MAX_RESTARTS='0'), timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == expect, f'exit status {result.returncode}\n' + output[-5000:]
    return output


def load(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def max_difference(first: Path, second: Path, part: str = 'state_dict') -> float:
    """The largest absolute difference between the floating-point tensors of one part of two
    checkpoints: the weights, or with ``part='optimizer'`` every state of every parameter."""
    return largest_difference(load(first)[part], load(second)[part])


def largest_difference(first, second) -> float:
    """The largest absolute difference between the floating-point tensors of two nested dicts
    with the same keys (other values are not compared)."""
    if isinstance(first, dict):
        assert first.keys() == second.keys()
        return max((largest_difference(first[key], second[key]) for key in first),
                   default=0.0)
    if torch.is_tensor(first) and first.is_floating_point() and first.numel():
        return (first.double() - second.double()).abs().max().item()
    return 0.0


def last_checkpoint(work_dir: Path) -> str:
    return Path((work_dir / 'last_checkpoint').read_text().strip()).name
