"""Resumed runs end bit-identical to uninterrupted ones, with dataloader workers, and a killed
run resumes from a complete checkpoint.

Real runs of tools/train.py on toy data: the tiny Mask R-CNN (epoch loop, 2 persistent
workers) and the tiny UperNet (iteration loop, 2 workers started afresh each pass), seed 0,
deterministic. The kills are real SIGKILLs at chosen points: while a chosen checkpoint is
half written (a storage backend that kills its own process there) and as a chosen iteration
starts (PreemptionDrillHook).
"""
import os
import random

import numpy as np
import pytest
import torch
from checkpoint_faults import DIE_WRITING
from mmengine.config import Config
from resume_runs import (
    DETECTION,
    SEGMENTATION,
    add_hook,
    detection_config,
    dump,
    last_checkpoint,
    load,
    make_data,
    max_difference,
    record_train_path,
    segmentation_config,
    train,
    train_path,
)
from torch.utils.data import DataLoader, SequentialSampler

from cvt_mm.engine import AtomicLocalBackend, enable_faithful_resume
from cvt_mm.engine.loops import ResumableBatchSampler, SampleSeededDataset
from cvt_mm.engine.resume import capture_random_states, restore_random_states


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Configs and uninterrupted work directories."""
    root = tmp_path_factory.mktemp('resume')
    data_root = make_data(root / 'data', num_train=6)
    configs = dict(detection=detection_config(data_root, **DETECTION),
                   segmentation=segmentation_config(data_root, **SEGMENTATION))
    runs = {}
    for name, cfg in configs.items():
        config = dump(cfg, root / f'{name}.py')
        train(config, root / name)
        runs[name] = (config, root / name)
    return runs


INTERRUPTIONS = [('detection', 'epoch_1.pth', 'epoch_2.pth'),
                 ('segmentation', 'iter_2.pth', 'iter_6.pth')]
FAITHFUL_PATH = dict(loop=('ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop'),
                     batch_sampler=('ResumableBatchSampler', ), dataset=('SampleSeededDataset', ))


def resumed_run(runs, tmp_path, name: str, first: str, *args: str):
    """The uninterrupted run's work directory; the work directory of the run resumed from
    its checkpoint ``first`` (tools/train.py ... --resume ``first`` ``args``) and what that
    run built (:func:`train_path`)."""
    config, uninterrupted = runs[name]
    probed = dump(record_train_path(Config.fromfile(config), tmp_path / 'path.json'),
                  tmp_path / 'probed.py')
    resumed = tmp_path / 'resumed'
    output = train(probed, resumed, '--resume', str(uninterrupted / first), *args)
    assert 'resumed' in output.lower()
    assert not (resumed / first).exists()  # it continued, it did not start again
    return uninterrupted, resumed, train_path(tmp_path / 'path.json')


@pytest.mark.parametrize('name, first, last', INTERRUPTIONS)
def test_resumed_run_ends_bit_identical(runs, tmp_path, name, first, last):
    uninterrupted, resumed, path = resumed_run(runs, tmp_path, name, first)
    assert all(path[part] in names for part, names in FAITHFUL_PATH.items()), path
    assert 'FaithfulResumeHook' in path['hooks']
    assert max_difference(uninterrupted / last, resumed / last) == 0.0


@pytest.fixture(scope='module')
def stock_runs(runs, tmp_path_factory):
    """The same configs' uninterrupted runs with mmengine's own loop and data path
    (tools/train.py --stock-loop)."""
    root = tmp_path_factory.mktemp('stock')
    for config, _ in runs.values():
        train(config, root / os.path.basename(config)[:-3], '--stock-loop')
    return {name: (config, root / name) for name, (config, _) in runs.items()}


@pytest.mark.parametrize('name, first, last', INTERRUPTIONS)
def test_resumed_with_the_stock_loop_it_differs(stock_runs, tmp_path, name, first, last):
    """The negative control of the test above: the same interruption of a --stock-loop run,
    resumed with --stock-loop, does not end where its own uninterrupted run does; so resuming
    is not bit-identical by itself, and the 0.0 above is the faithful machinery's doing."""
    uninterrupted, resumed, path = resumed_run(stock_runs, tmp_path, name, first, '--stock-loop')
    assert path['loop'] in ('EpochBasedTrainLoop', 'IterBasedTrainLoop'), path
    assert not any(path[part] in names for part, names in FAITHFUL_PATH.items()), path
    assert 'FaithfulResumeHook' not in path['hooks']
    assert max_difference(uninterrupted / last, resumed / last) > 0.0


def test_killed_run_resumes_from_a_complete_checkpoint(runs, tmp_path):
    """SIGKILL while iter_4.pth is half written, then as iteration 5 starts; resumed twice,
    the run ends as the uninterrupted one."""
    config, uninterrupted = runs['segmentation']
    cfg = Config.fromfile(config)
    cfg.custom_imports = dict(imports=['cvt_mm', 'checkpoint_faults'],
                              allow_failed_imports=False)
    cfg.default_hooks.checkpoint.update(interval=1,
                                        backend_args=dict(backend='dying_atomic_local'))
    work_dir = tmp_path / 'work'

    os.environ[DIE_WRITING] = 'iter_4.pth'
    try:
        train(dump(cfg, tmp_path / 'dies_writing.py'), work_dir, expect=-9)
    finally:
        del os.environ[DIE_WRITING]
    assert (work_dir / '.iter_4.pth.dying.tmp').is_file()  # the kill landed mid-write
    assert not (work_dir / 'iter_4.pth').exists()
    assert last_checkpoint(work_dir) == 'iter_3.pth'

    killed = add_hook(cfg.copy(), type='PreemptionDrillHook', iteration=5, signal='SIGKILL')
    train(dump(killed, tmp_path / 'killed.py'), work_dir, '--resume', expect=-9)
    assert (work_dir / 'iter_4.pth').is_file() and not (work_dir / 'iter_5.pth').exists()
    assert last_checkpoint(work_dir) == 'iter_4.pth'

    train(dump(cfg, tmp_path / 'resumed.py'), work_dir, '--resume')
    for path in work_dir.glob('iter_*.pth'):  # everything under a checkpoint's name loads
        assert 'state_dict' in load(path)
    assert max_difference(uninterrupted / 'iter_6.pth', work_dir / 'iter_6.pth') == 0.0


class LoadCounter:
    """A data set that records the indices it loads and returns a draw of each generator."""

    def __init__(self, size: int):
        self.size = size
        self.loaded = []

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        self.loaded.append(index)
        return index, random.random(), np.random.rand(), torch.rand(1).item()


def test_skipped_batches_are_not_loaded():
    dataset = LoadCounter(10)
    batch_sampler = ResumableBatchSampler(SequentialSampler(dataset), batch_size=3)
    loader = DataLoader(SampleSeededDataset(dataset), batch_sampler=batch_sampler,
                        collate_fn=list)
    everything = list(loader)
    dataset.loaded.clear()
    batch_sampler.skip_next(2)
    assert list(loader) == everything[2:]  # the same samples, the same random draws
    assert dataset.loaded == [6, 7, 8, 9]
    assert len(loader) == 4  # an epoch keeps its length
    assert list(loader) == everything  # the skip was for one pass


@pytest.mark.parametrize('num_workers, persistent_workers', [(2, False), (2, True)])
def test_pipeline_draws_do_not_depend_on_the_workers(num_workers, persistent_workers):
    def draws(**workers):
        dataset = SampleSeededDataset(LoadCounter(8))
        loader = DataLoader(dataset, batch_sampler=ResumableBatchSampler(
            SequentialSampler(dataset), batch_size=2), collate_fn=list, **workers)
        return [list(loader) for _ in range(2)]

    in_process = draws(num_workers=0)
    assert in_process[0] == in_process[1]  # position (seed, rank, epoch, batch, slot) alike
    assert len({sample[1] for batch in in_process[0] for sample in batch}) == 8
    assert draws(num_workers=num_workers, persistent_workers=persistent_workers) == in_process


def test_seeded_sample_restores_the_callers_generators():
    dataset = SampleSeededDataset(LoadCounter(2))
    states = capture_random_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_random_states(states)
    first = dataset[(1, (0, 0, 0, 0, 1))]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert dataset[(1, (0, 0, 0, 0, 1))] == first != dataset[(1, (0, 0, 0, 1, 1))]


def test_random_states_round_trip():
    states = capture_random_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_random_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_atomic_backend_leaves_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    backend = AtomicLocalBackend()
    backend.put_text('epoch_1.pth', target)

    def fail(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        backend.put_text('epoch_2.pth', target)
    assert target.read_text() == 'epoch_1.pth'
    assert sorted(path.name for path in tmp_path.iterdir()) == ['last_checkpoint']


def test_enable_faithful_resume_keeps_a_chosen_storage_backend():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook')),
                      custom_hooks=[dict(type='EMAHook')]))
    enable_faithful_resume(cfg)
    enable_faithful_resume(cfg)  # idempotent
    assert [hook['type'] for hook in cfg.custom_hooks] == ['EMAHook', 'FaithfulResumeHook']
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend='atomic_local')
    s3 = Config(dict(default_hooks=dict(checkpoint=dict(
        type='CheckpointHook', backend_args=dict(backend='petrel')))))
    enable_faithful_resume(s3)
    assert s3.default_hooks.checkpoint.backend_args == dict(backend='petrel')


@pytest.mark.parametrize('train_cfg, loop', [
    (dict(type='EpochBasedTrainLoop', max_epochs=12), 'ResumableEpochBasedTrainLoop'),
    (dict(by_epoch=True, max_epochs=12), 'ResumableEpochBasedTrainLoop'),
    (dict(type='IterBasedTrainLoop', max_iters=100), 'ResumableIterBasedTrainLoop'),
    (dict(by_epoch=False, max_iters=100), 'ResumableIterBasedTrainLoop'),
])
def test_enable_faithful_resume_switches_loop_and_data_path(train_cfg, loop):
    dataset = dict(type='CocoDataset', pipeline=[])
    cfg = Config(dict(train_cfg=train_cfg, train_dataloader=dict(
        batch_size=2, drop_last=True, dataset=dataset,
        batch_sampler=dict(type='AspectRatioBatchSampler'))))
    enable_faithful_resume(cfg)
    enable_faithful_resume(cfg)  # idempotent
    assert cfg.train_cfg.type == loop and 'by_epoch' not in cfg.train_cfg
    loader = cfg.train_dataloader
    assert loader.dataset == dict(type='SampleSeededDataset', dataset=dataset)
    assert loader.batch_sampler == dict(type='ResumableBatchSampler', drop_last=True,
                                        batch_sampler=dict(type='AspectRatioBatchSampler'))
    assert 'drop_last' not in loader
