"""configs/fsdp/cvtw24_in22k-384.py: FSDP through mmengine's FlexibleRunner, here with two gloo
processes on CPU and the arch made tiny; the checkpoint is one full state dict that loads into
the plain classifier."""
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmpretrain.registry import MODELS
from resume_runs import load, max_difference, train

from cvt_mm.apis import classifier_cfg
from cvt_mm.engine import cvt_block_wrap_policy
from cvt_mm.testing import FAST_TEST_ARCH
from cvt_mm.toy import shapes


def fsdp_config(tmp_path, name: str, *hooks: dict):
    """The FSDP config with FAST_TEST_ARCH on ten toy images: two epochs of five iterations
    of one image per rank, a checkpoint every epoch."""
    data_root = tmp_path / 'imagenet'
    if not data_root.exists():
        shapes.make_imagenet(data_root, train_per_class=2, val_per_class=1, seed=0)
    cfg = Config.fromfile(CONFIG_DIR / 'fsdp' / 'cvtw24_in22k-384.py')
    assert cfg.strategy.model_wrapper.auto_wrap_policy.type == 'cvt_block_wrap_policy'
    cfg.model.backbone.arch = FAST_TEST_ARCH
    cfg.model.head.update(num_classes=5, in_channels=FAST_TEST_ARCH['embed_dims'][-1])
    cfg.model.train_cfg = None  # no Mixup/CutMix on five images
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        split = 'train' if loader == 'train_dataloader' else 'val'
        cfg[loader].update(batch_size=1, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(data_root=str(data_root), data_prefix=split,
                                   ann_file=f'meta/{split}.txt')
    for step in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.dataset.pipeline:
        for key in ('scale', 'crop_size'):
            if key in step:
                step[key] = 64
    cfg.data_preprocessor.num_classes = 5
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=10)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + list(hooks)
    config = tmp_path / f'{name}.py'
    cfg.dump(config)
    return config


def test_fsdp_config_trains_and_resumes_inside_an_epoch_bit_for_bit(tmp_path):
    """Two gloo processes. Uninterrupted: two epochs, a full checkpoint that loads into the
    plain classifier. Then SIGTERM to rank 0 as iteration 3 (of 5 in epoch 1) starts: both
    ranks stop after it with exit status 75 (torchrun's is 1) and iter_3.pth; ``--resume``
    continues inside the epoch and ends with the uninterrupted run's weights and optimizer
    state (AdamW's moments of every shard, gathered on rank 0)."""
    uninterrupted = fsdp_config(tmp_path, 'uninterrupted')
    reference_dir = tmp_path / 'reference'
    output = train(uninterrupted, reference_dir, processes=2)
    # FSDP's own deprecation notice for the state-dict API the strategy calls: it did wrap.
    assert 'set_state_dict_type' in output
    reference = reference_dir / 'epoch_2.pth'
    classifier = MODELS.build(classifier_cfg(FAST_TEST_ARCH, 5))
    classifier.load_state_dict(load(reference)['state_dict'], strict=True)

    work_dir = tmp_path / 'preempted'
    faulty = fsdp_config(tmp_path, 'preempted',
                         dict(type='PreemptionDrillHook', iteration=3, rank=0))
    output = train(faulty, work_dir, processes=2, expect=1)
    assert output.count('SIGTERM: stopped after iteration 3 (') == 2, output[-4000:]
    assert (work_dir / 'iter_3.pth').is_file() and not (work_dir / 'epoch_1.pth').exists()
    output = train(uninterrupted, work_dir, '--resume', processes=2)
    assert 'resumed epoch: 0, iter: 3' in output, output[-4000:]
    resumed = work_dir / 'epoch_2.pth'
    assert max_difference(resumed, reference) == 0.0
    assert max_difference(resumed, reference, part='optimizer') == 0.0


def test_each_cvt_block_is_one_fsdp_unit():
    from cvt_mm.models import CvT
    from cvt_mm.models.backbones.cvt import CvTBlock
    model = CvT(arch=FAST_TEST_ARCH)
    wrapped = [name for name, module in model.named_modules()
               if cvt_block_wrap_policy(module, recurse=False, nonwrapped_numel=0)]
    blocks = [name for name, module in model.named_modules() if isinstance(module, CvTBlock)]
    assert wrapped == blocks and len(blocks) == sum(FAST_TEST_ARCH['depths'])
