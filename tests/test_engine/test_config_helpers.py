"""cvt_mm's config helpers compose: applied to a loaded config in any order, and any of them
twice, they give one config, and that config trains with dataloader workers.

The helpers: ``enable_faithful_resume``, ``skip_bad_samples``, ``enable_preemption``,
``enable_amp`` and the layer-decay constructor (set as a user sets it, two config keys). Every
order of the five (120) is compared as a config, which is cheap; two orders are trained for 2
iterations with 2 workers: the one that used to nest ``SkipBadSamples`` outside
``SampleSeededDataset`` (whose batch sampler yields ``(index, key)`` pairs: a TypeError in
the workers) and its reverse. ``enable_amp`` needs a GPU to train, so on CPU it is in the
config comparison only.
"""
import copy
import itertools

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS
from mmengine.runner import get_priority
from resume_runs import IMAGE_SIZE, detection_config

from cvt_mm.datasets import skip_bad_samples
from cvt_mm.engine import build_runner, enable_amp, enable_faithful_resume, enable_preemption
from cvt_mm.engine import config as engine_config
from cvt_mm.toy import shapes


def enable_layer_decay(cfg: Config) -> None:
    cfg.merge_from_dict({'optim_wrapper.constructor': 'LayerDecayOptimWrapperConstructor',
                         'optim_wrapper.paramwise_cfg.layer_decay_rate': 0.9})


HELPERS = dict(faithful_resume=enable_faithful_resume, skip_bad_samples=skip_bad_samples,
               preemption=enable_preemption, amp=enable_amp, layer_decay=enable_layer_decay)
# The order the workers' TypeError came from, and its reverse.
TRAINED_ORDERS = [('faithful_resume', 'skip_bad_samples', 'preemption', 'layer_decay'),
                  ('layer_decay', 'preemption', 'skip_bad_samples', 'faithful_resume')]


@pytest.fixture(scope='module')
def toy_detection(tmp_path_factory):
    """configs/toy/cvt_demo_maskrcnn_toy.py on 4 toy images: 2 iterations of 2, 2 workers."""
    root = tmp_path_factory.mktemp('helpers')
    shapes.make_coco(root / 'coco', num_train=4, num_val=1, image_size=IMAGE_SIZE, seed=0)
    return detection_config(root, batch_size=2, max_epochs=1, num_workers=2,
                            persistent_workers=False)


def applied(cfg: Config, order, times: int = 1) -> Config:
    cfg = copy.deepcopy(cfg)
    for _ in range(times):
        for name in order:
            HELPERS[name](cfg)
    return cfg


def priority(hook_type: str) -> int:
    return get_priority(HOOKS.get(hook_type).priority)


def comparable(cfg: Config) -> dict:
    """The config as a dict, its custom hooks in the order the Runner calls them (by
    priority, then as listed)."""
    as_dict = cfg.to_dict()
    hooks = as_dict.get('custom_hooks') or []
    rank = {hook['type']: priority(hook['type']) for hook in hooks}
    as_dict['custom_hooks'] = sorted(hooks, key=lambda hook: rank[hook['type']])
    return as_dict


def test_every_order_and_every_repetition_gives_one_config(toy_detection, monkeypatch):
    monkeypatch.setattr(engine_config, 'is_cuda_available', lambda: True)  # enable_amp's check
    expected = comparable(applied(toy_detection, HELPERS))
    hooks = [hook['type'] for hook in expected['custom_hooks']]
    assert hooks == ['FaithfulResumeHook', 'SkippedSamplesHook', 'PreemptionHook']
    # Distinct priorities: the Runner calls them in one order, whatever order they are listed in.
    assert len({priority(hook) for hook in hooks}) == len(hooks)
    loader = expected['train_dataloader']
    assert loader['dataset']['type'] == 'SampleSeededDataset'
    assert loader['dataset']['dataset']['type'] == 'SkipBadSamples'
    assert expected['optim_wrapper']['type'] == 'AmpOptimWrapper'
    for order in itertools.permutations(HELPERS):
        assert comparable(applied(toy_detection, order)) == expected, order
        assert comparable(applied(toy_detection, order, times=2)) == expected, order


@pytest.mark.parametrize('order', TRAINED_ORDERS, ids='-'.join)
def test_helpers_applied_in_any_order_train_with_workers(toy_detection, tmp_path, order):
    if torch.cuda.is_available():
        order = order + ('amp', )
    cfg = applied(toy_detection, order)
    cfg.work_dir = str(tmp_path)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 2
    assert (tmp_path / 'epoch_1.pth').is_file()
