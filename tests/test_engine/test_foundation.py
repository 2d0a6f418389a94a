"""The environment: the task libraries import, and Runner checkpoints resume on this torch while
untrusted pickles are still refused."""
import os
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

import cvt_mm  # noqa: F401  (allowlists Runner checkpoint types)


def test_task_libraries_import():
    # On mmcv-lite through the stand-in for mmcv._ext (tests/test_mmcv_ext_fallback.py).
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401


class LinearRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        prediction = self.linear(torch.stack(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((prediction - torch.stack(targets)) ** 2).mean())
        return prediction


class PointsDataset(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        point = torch.tensor([index / 8, 1 - index / 8])
        return dict(inputs=point, targets=point.sum())


def make_runner(work_dir, **kwargs):
    return Runner(
        model=LinearRegressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=PointsDataset(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
                         dict(type='CosineAnnealingLR', by_epoch=True, T_max=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0), **kwargs)


def test_runner_trains_saves_and_resumes(tmp_path):
    first = make_runner(tmp_path / 'first')
    first.train()
    epoch1 = tmp_path / 'first' / 'epoch_1.pth'
    assert epoch1.exists() and (tmp_path / 'first' / 'epoch_2.pth').exists()
    saved = torch.load(epoch1)  # the default, weights_only=True, on this torch
    assert saved['meta']['epoch'] == 1

    resumed = make_runner(tmp_path / 'resumed', load_from=str(epoch1), resume=True)
    resumed.train()
    assert resumed.train_loop.epoch == 2
    # The optimizer state came back: AdamW's step count continues from epoch 1's two steps.
    state = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert int(next(iter(state.values()))['step']) == 4


class ExecutesOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_untrusted_pretrained_pickle_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    payload = tmp_path / 'pretrained.pth'
    with open(payload, 'wb') as file:
        pickle.dump({'state_dict': ExecutesOnLoad(marker)}, file)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(payload), map_location='cpu')  # how init_cfg Pretrained loads
    assert not marker.exists()


def test_checkpoint_getattr_reaches_only_history_buffer_statistics(tmp_path):
    """The getattr allowlisted for HistoryBuffer cannot fetch anything else."""

    from mmengine.logging import HistoryBuffer

    class FetchesMethod:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'update'))

    path = tmp_path / 'crafted.pth'
    torch.save({'x': FetchesMethod()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
