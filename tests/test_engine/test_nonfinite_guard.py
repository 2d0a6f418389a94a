"""NonFiniteLossGuardHook: NaN losses of chosen iterations are caught, their updates skipped
(with and without gradient accumulation), normal steps go on, and a run of them stops training
before a checkpoint is written for it."""
import math

import pytest
import torch
import torch.nn as nn
from helpers import LogCapture
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import cvt_mm  # noqa: F401  (registers NonFiniteLossGuardHook)

BATCH_SIZE = 2  # BatchNorm needs two samples per batch


class BatchNormRegressor(BaseModel):
    """BatchNorm then a linear layer: a NaN input poisons the running statistics and the loss."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(2)
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        prediction = self.linear(self.norm(torch.stack(inputs))).squeeze(-1)
        if mode == 'loss':
            return dict(loss_fit=((prediction - torch.stack(targets)) ** 2).mean(),
                        loss_small=prediction.abs().mean() * 1e-3)
        return prediction


class PointsWithBadIterations(Dataset):
    """Points whose inputs are NaN in the batches of the chosen 0-based iterations."""

    def __init__(self, bad_iterations):
        self.bad_iterations = set(bad_iterations)

    def __len__(self):
        return 64

    def __getitem__(self, index):
        point = torch.tensor([index / 64, 1 - 2 * index / 64])
        if index // BATCH_SIZE in self.bad_iterations:
            point = torch.full((2, ), math.nan)
        return dict(inputs=point, targets=torch.tensor(index / 32))


class RecordState(Hook):
    """After every iteration: the weights and the BatchNorm running mean."""

    priority = 'LOWEST'

    def __init__(self):
        self.weights, self.running_means = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model
        self.weights.append(model.linear.weight.detach().clone())
        self.running_means.append(model.norm.running_mean.detach().clone())


def make_runner(work_dir, bad_iterations, max_iters, accumulative_counts=1, max_consecutive=3):
    record = RecordState()
    runner = Runner(
        model=BatchNormRegressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=PointsWithBadIterations(bad_iterations),
                              batch_size=BATCH_SIZE,
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1),
                           accumulative_counts=accumulative_counts),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='NonFiniteLossGuardHook', max_consecutive=max_consecutive),
                      record],
        randomness=dict(seed=0))
    return runner, record


def changed(before, after):
    return not torch.equal(before, after)


def test_bad_iterations_are_skipped_and_training_goes_on(tmp_path):
    runner, record = make_runner(tmp_path, bad_iterations=[2, 4], max_iters=6)
    with LogCapture() as log:
        runner.train()
    weights = record.weights
    assert [changed(weights[i - 1], weights[i]) for i in range(1, 6)] == [
        True, False, True, False, True]  # iterations 2..6 (1-based); 3 and 5 were NaN
    assert all(torch.isfinite(mean).all() for mean in record.running_means)
    torch.testing.assert_close(record.running_means[2], record.running_means[1], rtol=0, atol=0)
    warnings = [message for message in log.messages if 'non-finite loss' in message]
    assert len(warnings) == 2
    assert warnings[0].startswith('non-finite loss at iteration 3 (loss=nan, loss_fit=nan, '
                                  'loss_small=nan; lr=0.1): update skipped '
                                  '(1 in a row, 1 in this run)'), warnings[0]
    assert 'iteration 5' in warnings[1] and '2 in this run' in warnings[1]


def test_a_bad_loss_drops_its_whole_accumulation_window(tmp_path):
    runner, record = make_runner(tmp_path, bad_iterations=[2], max_iters=8,
                                 accumulative_counts=2)
    runner.train()
    weights = record.weights
    # Steps after iterations 2, 4, 6, 8; the window of iterations 3 and 4 held the NaN.
    assert [changed(weights[i - 1], weights[i]) for i in range(1, 8)] == [
        True, False, False, False, True, False, True]


def test_consecutive_bad_iterations_stop_before_a_checkpoint(tmp_path):
    runner, record = make_runner(tmp_path, bad_iterations=[2, 3, 4], max_iters=8)
    with pytest.raises(RuntimeError) as error:
        runner.train()
    message = str(error.value)
    assert message.startswith('NonFiniteLossGuardHook: 3 consecutive non-finite losses, the '
                              'last at iteration 5; training stopped (the last checkpoint, '), \
        message
    assert str(tmp_path / 'iter_4.pth') in message
    assert not (tmp_path / 'iter_5.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(tmp_path / 'iter_4.pth')
    # The checkpoints saved inside the run of NaNs hold the last good iteration's state.
    good = torch.load(tmp_path / 'iter_2.pth')
    inside = torch.load(tmp_path / 'iter_4.pth')
    for name, value in good['state_dict'].items():
        assert torch.equal(inside['state_dict'][name], value), name
    assert inside['optimizer'] == good['optimizer']


def test_max_consecutive_must_be_positive():
    from cvt_mm.engine import NonFiniteLossGuardHook
    with pytest.raises(ValueError, match='at least 1'):
        NonFiniteLossGuardHook(max_consecutive=0)
