"""NonFiniteLossGuardHook: NaN losses of chosen iterations are caught, their updates skipped
(with and without gradient accumulation, and on every process of a DDP run when only one has
the NaN), normal steps go on, and a run of them stops training before a checkpoint is written
for it.

This file is also the script of the two processes of the DDP test (see the end)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from helpers import LogCapture
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.runner import Runner
from resume_runs import train_env
from torch.utils.data import Dataset

import cvt_mm  # noqa: F401  (registers NonFiniteLossGuardHook)
from cvt_mm.engine import setup_cpu_distributed, shutdown_distributed

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
    """Points whose inputs are NaN in the batches of the chosen 0-based iterations.

    With ``world_size`` processes, only in the batches of process ``bad_rank``: an unshuffled
    DefaultSampler gives rank r the indices r, r + world_size, ..., so an index's rank and
    iteration follow from it.
    """

    def __init__(self, bad_iterations, world_size=1, bad_rank=0):
        self.bad_iterations = set(bad_iterations)
        self.world_size = world_size
        self.bad_rank = bad_rank

    def __len__(self):
        return 64

    def __getitem__(self, index):
        point = torch.tensor([index / 64, 1 - 2 * index / 64])
        iteration, rank = divmod(index, self.world_size)
        iteration //= BATCH_SIZE
        if iteration in self.bad_iterations and rank == self.bad_rank:
            point = torch.full((2, ), math.nan)
        return dict(inputs=point, targets=torch.tensor(index / 32))


class RecordState(Hook):
    """After every iteration: the weights and the BatchNorm running mean."""

    priority = 'LOWEST'

    def __init__(self):
        self.weights, self.running_means = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.weights.append(model.linear.weight.detach().clone())
        self.running_means.append(model.norm.running_mean.detach().clone())


def cpu_ddp_options() -> dict:
    """The Runner arguments of a DDP run on CPU, from cvt_mm's glue (which also starts the gloo
    group from torchrun's environment) as tools/train.py gets them."""
    cfg = Config(dict(launcher='pytorch', model=dict()))  # the toy's model is not a config
    setup_cpu_distributed(cfg)
    # The Runner reads the wrapper's arguments from its cfg.
    return dict(launcher='pytorch', cfg=Config(dict(model_wrapper_cfg=cfg.model_wrapper_cfg)))


def make_runner(work_dir, bad_iterations, max_iters, accumulative_counts=1, max_consecutive=3,
                distributed=False, bad_rank=0):
    record = RecordState()
    distributed_options = cpu_ddp_options() if distributed else {}
    world_size = dist.get_world_size() if distributed else 1
    runner = Runner(
        model=BatchNormRegressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=PointsWithBadIterations(bad_iterations, world_size,
                                                               bad_rank),
                              batch_size=BATCH_SIZE,
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1),
                           accumulative_counts=accumulative_counts),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='NonFiniteLossGuardHook', max_consecutive=max_consecutive),
                      record],
        randomness=dict(seed=0), **distributed_options)
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


def train_one_of_two_processes(out_dir: Path):
    """One process of the DDP test: rank 1's batch of iteration 3 (1-based) is NaN, rank 0's
    never is; what the process saw goes to ``out_dir/rank_<rank>.pt``."""
    runner, record = make_runner(out_dir / 'work', bad_iterations=[2], max_iters=5,
                                 distributed=True, bad_rank=1)
    with LogCapture() as log:
        runner.train()
    torch.save(dict(weights=record.weights, running_means=record.running_means,
                    messages=log.messages), out_dir / f'rank_{dist.get_rank()}.pt')
    shutdown_distributed()


def test_a_nan_loss_on_one_of_two_processes_is_skipped_on_both(tmp_path):
    """Two gloo processes under torchrun, the NaN in rank 1's batch only. Without the
    all-reduced verdict rank 0 would step on the NaN gradients DDP averages in, and the two
    copies of the model would part."""
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
         __file__, str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        # No GPU even where there is one: the gloo path on CPU is the one under test.
        env=dict(train_env(), CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 0, result.stderr[-5000:]
    records = [torch.load(tmp_path / f'rank_{rank}.pt', weights_only=True) for rank in (0, 1)]
    for rank, record in enumerate(records):
        warnings = [message for message in record['messages'] if 'non-finite loss' in message]
        assert len(warnings) == 1 and warnings[0].startswith('non-finite loss at iteration 3 ('), \
            (rank, warnings)
        # Each process logs its own loss terms: only rank 1's were NaN.
        assert ('loss=nan' in warnings[0]) == (rank == 1), (rank, warnings[0])
        weights, running_means = record['weights'], record['running_means']
        assert [changed(weights[i - 1], weights[i]) for i in range(1, 5)] == [
            True, False, True, True], rank  # iterations 2..5 (1-based); 3 was skipped
        assert all(torch.isfinite(tensor).all() for tensor in weights + running_means), rank
        torch.testing.assert_close(running_means[2], running_means[1], rtol=0, atol=0)
    for first, second in zip(records[0]['weights'], records[1]['weights']):
        assert torch.equal(first, second)


if __name__ == '__main__':
    train_one_of_two_processes(Path(sys.argv[1]))
