"""Resumed runs end bit-identical to uninterrupted ones, and a killed run resumes.

Real runs of tools/train.py on toy data: the tiny Mask R-CNN (epoch-based loop) and the tiny
UperNet (iteration-based loop, resumed mid-schedule), seed 0, deterministic, no dataloader
workers.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import TOOLS_DIR, load_repo_config, make_toy_datasets, toy_config
from mmengine.config import Config

from cvt_mm.engine import AtomicLocalBackend, enable_faithful_resume
from cvt_mm.engine.resume import capture_random_states, restore_random_states

DETERMINISTIC = ['randomness.seed=0', 'randomness.deterministic=True']


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    data_root = make_toy_datasets(root / 'data')
    paths = {}
    for scope, name in (('mmdet', 'cvt13_maskrcnn_coco.py'),
                        ('mmseg', 'cvt13_upernet_ade20k.py')):
        cfg = toy_config(load_repo_config(name), data_root)
        if scope == 'mmdet':
            # One image per iteration: two iterations an epoch, two epochs, no validation.
            cfg.train_dataloader.batch_size = 1
            cfg.train_cfg.update(max_epochs=2, val_interval=100)
        else:
            cfg.train_cfg.update(max_iters=4, val_interval=100)
            cfg.default_hooks.checkpoint.update(interval=2, by_epoch=False)
        paths[scope] = root / f'{scope}.py'
        cfg.dump(paths[scope])
    return paths


def train(config, work_dir, *resume):
    """tools/train.py CONFIG --work-dir WORK_DIR [--resume [CHECKPOINT]], deterministic."""
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'train.py'), str(config), '--work-dir', str(work_dir),
         *resume, '--cfg-options', *DETERMINISTIC],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def max_difference(first, second):
    assert first.keys() == second.keys()
    return max((first[key].double() - second[key].double()).abs().max().item()
               for key in first if first[key].is_floating_point())


@pytest.mark.parametrize('scope, first, last', [('mmdet', 'epoch_1.pth', 'epoch_2.pth'),
                                                ('mmseg', 'iter_2.pth', 'iter_4.pth')])
def test_resumed_run_ends_bit_identical(configs, tmp_path, scope, first, last):
    uninterrupted = tmp_path / 'uninterrupted'
    train(configs[scope], uninterrupted)
    assert 'random_states' in torch.load(uninterrupted / first, map_location='cpu',
                                         weights_only=True)
    resumed = tmp_path / 'resumed'
    output = train(configs[scope], resumed, '--resume', str(uninterrupted / first))
    assert 'resumed' in output.lower()
    assert not (resumed / first).exists()  # it continued, it did not start again
    assert max_difference(weights(uninterrupted / last), weights(resumed / last)) == 0.0


def test_killed_run_resumes_from_a_complete_checkpoint(configs, tmp_path):
    """SIGKILL at a random moment, once in the middle of writing a checkpoint."""
    config = tmp_path / 'long.py'
    cfg = Config.fromfile(configs['mmseg'])
    cfg.train_cfg.max_iters = 12
    cfg.default_hooks.checkpoint.interval = 1
    cfg.dump(config)
    work_dir = tmp_path / 'work'
    command = [sys.executable, str(TOOLS_DIR / 'train.py'), str(config), '--work-dir',
               str(work_dir), '--cfg-options', *DETERMINISTIC]
    env = dict(os.environ, OMP_NUM_THREADS='1')

    # First kill: as soon as a checkpoint is being written (its temporary file exists).
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any(work_dir.glob('.iter_*.pth.*.tmp')):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'

    # Second kill: at a random moment of the resumed run.
    process = subprocess.Popen(command + ['--resume'], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(random.Random(0).uniform(4, 9))
    process.send_signal(signal.SIGKILL)
    process.wait()

    output = train(config, work_dir, '--resume')
    assert (work_dir / 'iter_12.pth').is_file(), output[-3000:]
    # Everything that carries a checkpoint's name is complete.
    for path in work_dir.glob('iter_*.pth'):
        assert 'state_dict' in torch.load(path, map_location='cpu', weights_only=True)


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
