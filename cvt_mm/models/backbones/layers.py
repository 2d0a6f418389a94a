"""Generic pieces of CvT's blocks and stages, not particular to the paper: stochastic depth (the
residual sum with a dropped path, the per-block rates) and the BatchNorm statistics under
activation checkpointing."""
import contextlib
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as checkpoint
from torch.nn.modules.batchnorm import _BatchNorm


def add_dropped_path(x: torch.Tensor, branch: torch.Tensor, drop_prob: float,
                     training: bool) -> torch.Tensor:
    """``x + DropPath(drop_prob)(branch)`` in one pass over the tokens each way, where mmcv's
    DropPath and the sum take three forward and two backward. The same random numbers and
    samples dropped, and the same forward (each kept branch divided by the keep probability,
    then added); the branch's gradient is multiplied by the reciprocal instead of divided."""
    if not training or drop_prob == 0.:
        return x + branch
    keep_prob = 1 - drop_prob
    shape = (branch.shape[0], ) + (1, ) * (branch.ndim - 1)
    kept = (keep_prob + torch.rand(shape, dtype=branch.dtype, device=branch.device)).floor_()
    # A dropped sample's branch is divided by infinity: zero, forward and backward.
    return torch.addcdiv(x, branch, keep_prob / kept)


@contextlib.contextmanager
def frozen_batch_norm_statistics(module: nn.Module):
    """The BatchNorms of ``module`` normalise as they would (batch statistics in training) but
    leave their running statistics and ``num_batches_tracked`` as they are.

    A momentum of 0 keeps the running statistics (``0 * batch + 1 * running``) while the op
    saves for backward what it saves in the forward it repeats, which the checkpoint checks;
    without ``num_batches_tracked`` the module neither counts the batch nor turns a None
    momentum into a cumulative average.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(norm.momentum, norm.num_batches_tracked) for norm in norms]
    for norm in norms:
        norm.momentum, norm.num_batches_tracked = 0., None
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, saved):
            norm.momentum, norm.num_batches_tracked = momentum, count


def stage_drop_path_rates(drop_path_rate, depths: Sequence[int]) -> List[List[float]]:
    """Per-block stochastic depth.

    A sequence gives each stage its own maximum, rising linearly within the stage (the official
    recipe); a float rises linearly over all blocks of the network (the Swin / mmdet convention).
    """
    if isinstance(drop_path_rate, (int, float)):
        # device='cpu': plain numbers, even when the model is built under a meta-device context.
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        bounds = [sum(depths[:i]) for i in range(len(depths) + 1)]
        return [rates[bounds[i]:bounds[i + 1]] for i in range(len(depths))]
    if len(drop_path_rate) != len(depths):
        raise ValueError(f'drop_path_rate has {len(drop_path_rate)} entries for '
                         f'{len(depths)} stages')
    return [torch.linspace(0, rate, depth, device='cpu').tolist()
            for rate, depth in zip(drop_path_rate, depths)]


def checkpoint_keeping_batch_norm_statistics(function, x: torch.Tensor, module: nn.Module):
    """``function(x)`` under activation checkpointing. Backward recomputes it, the BatchNorms of
    ``module`` included; their running statistics are the forward's to update, once per step
    (:func:`frozen_batch_norm_statistics` for the recomputation)."""
    return checkpoint.checkpoint(
        function, x, use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), frozen_batch_norm_statistics(module)))
