"""configs/fsdp/cvtw24_in22k-384.py: FSDP through mmengine's FlexibleRunner, here with two gloo
processes on CPU and the arch made tiny; the checkpoint is one full state dict that loads into
the plain classifier."""
import os
import subprocess
import sys

import torch
from helpers import CONFIG_DIR, TOOLS_DIR
from mmengine.config import Config
from mmpretrain.registry import MODELS

from cvt_mm.apis import classifier_cfg
from cvt_mm.datasets import toy_shapes
from cvt_mm.engine import cvt_block_wrap_policy
from cvt_mm.testing import TINY_ARCH


def fsdp_config(tmp_path, name: str, *hooks: dict):
    """The FSDP config with the tiny arch on ten toy images: two epochs of five iterations
    of one image per rank, a checkpoint every epoch, seeded."""
    data_root = tmp_path / 'imagenet'
    if not data_root.exists():
        toy_shapes.make_imagenet(data_root, train_per_class=2, val_per_class=1, seed=0)
    cfg = Config.fromfile(CONFIG_DIR / 'fsdp' / 'cvtw24_in22k-384.py')
    assert cfg.strategy.model_wrapper.auto_wrap_policy.type == 'cvt_block_wrap_policy'
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.update(num_classes=5, in_channels=TINY_ARCH['embed_dims'][-1])
    cfg.model.train_cfg = None  # no Mixup/CutMix on five images
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        train = loader == 'train_dataloader'
        cfg[loader].update(batch_size=1, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(data_root=str(data_root), data_prefix='train' if train
                                   else 'val', ann_file=f"meta/{'train' if train else 'val'}.txt")
    for step in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.dataset.pipeline:
        for key in ('scale', 'crop_size'):
            if key in step:
                step[key] = 64
    cfg.data_preprocessor.num_classes = 5
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=10)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + list(hooks)
    config = tmp_path / f'{name}.py'
    cfg.dump(config)
    return config


def dist_train(config, work_dir, *args: str, expect: int = 0) -> str:
    result = subprocess.run(
        ['bash', str(TOOLS_DIR / 'dist_train.sh'), str(config), '2', '--work-dir',
         str(work_dir), *args],
        env=dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', MAX_RESTARTS='0'),
        capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output[-4000:]
    return output


def max_difference(first: dict, second: dict) -> float:
    """The largest absolute difference between two (nested) dicts of tensors."""
    assert first.keys() == second.keys()
    differences = [0.0]
    for key, value in first.items():
        if isinstance(value, dict):
            differences.append(max_difference(value, second[key]))
        elif torch.is_tensor(value) and value.is_floating_point() and value.numel():
            differences.append((value.double() - second[key].double()).abs().max().item())
    return max(differences)


def test_fsdp_config_trains_and_resumes_inside_an_epoch_bit_for_bit(tmp_path):
    """Two gloo processes. Uninterrupted: two epochs, a full checkpoint that loads into the
    plain classifier. Then SIGTERM to rank 0 as iteration 3 (of 5 in epoch 1) starts: both
    ranks stop after it with exit status 75 (torchrun's is 1) and iter_3.pth; ``--resume``
    continues inside the epoch and ends with the uninterrupted run's weights and optimizer
    state (AdamW's moments of every shard, gathered on rank 0)."""
    reference_dir = tmp_path / 'reference'
    output = dist_train(fsdp_config(tmp_path, 'uninterrupted'), reference_dir)
    # FSDP's own deprecation notice for the state-dict API the strategy calls: it did wrap.
    assert 'set_state_dict_type' in output
    reference = torch.load(reference_dir / 'epoch_2.pth', map_location='cpu',
                           weights_only=True)
    classifier = MODELS.build(classifier_cfg(TINY_ARCH, 5))
    classifier.load_state_dict(reference['state_dict'], strict=True)

    work_dir = tmp_path / 'preempted'
    faulty = fsdp_config(tmp_path, 'preempted',
                         dict(type='PreemptionDrillHook', iteration=3, rank=0))
    output = dist_train(faulty, work_dir, expect=1)
    assert output.count('SIGTERM: stopped after iteration 3 (') == 2, output[-4000:]
    assert (work_dir / 'iter_3.pth').is_file() and not (work_dir / 'epoch_1.pth').exists()
    output = dist_train(fsdp_config(tmp_path, 'resumed'), work_dir, '--resume')
    assert 'resumed epoch: 0, iter: 3' in output, output[-4000:]
    resumed = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert max_difference(resumed['state_dict'], reference['state_dict']) == 0.0
    assert max_difference(resumed['optimizer']['state'], reference['optimizer']['state']) == 0.0


def test_each_cvt_block_is_one_fsdp_unit():
    from cvt_mm.models import CvT
    from cvt_mm.models.backbones.cvt import CvTBlock
    model = CvT(arch=TINY_ARCH)
    wrapped = [name for name, module in model.named_modules()
               if cvt_block_wrap_policy(module, recurse=False, nonwrapped_numel=0)]
    blocks = [name for name, module in model.named_modules() if isinstance(module, CvTBlock)]
    assert wrapped == blocks and len(blocks) == sum(TINY_ARCH['depths'])
