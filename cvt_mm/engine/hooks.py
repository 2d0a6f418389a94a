"""Hooks for long runs: :class:`NonFiniteLossGuardHook` skips the updates of NaN/inf losses.

Enabled from a config of any of the three task libraries with::

    custom_hooks = [dict(type='NonFiniteLossGuardHook', max_consecutive=3)]

(registered in mmengine's root HOOKS registry, which the libraries' registries fall back to).
"""
import logging
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NonFiniteLossGuardHook(Hook):
    """Skip the parameter update of every non-finite loss; stop after too many in a row.

    mmengine's train loop calls ``model.train_step(data, optim_wrapper)``, which parses the
    losses and calls ``optim_wrapper.update_params(loss)`` (backward, then step and zero_grad
    at the end of each gradient accumulation window); no hook runs between. So at
    ``before_train`` this hook replaces ``update_params`` *on the runner's optimizer wrapper
    instance* with a guarded version that works through the wrapper's public methods, so
    ``OptimWrapper`` and ``AmpOptimWrapper`` (and gradient accumulation) behave as before on
    finite losses:

    * a finite loss in a window without bad ones: the original ``update_params``;
    * a non-finite loss: backward still runs (so the accumulation counter and DDP's gradient
      all-reduce stay in step on every process), but the window it belongs to ends with
      ``zero_grad()`` instead of ``step()``: its gradients, and those of the window's good
      micro-batches, are dropped, the optimizer state does not change;
    * the model's buffers (BatchNorm running statistics, which a NaN forward pass poisons and
      skipping the step would not undo) are restored to their values before that iteration
      (``restore_buffers``).

    Under distributed training the verdict is all-reduced, so that every process skips the
    same steps. At ``after_train_iter`` (priority ABOVE_NORMAL, before the LoggerHook and
    long before the CheckpointHook's VERY_LOW) a bad iteration is logged with its loss terms
    and learning rates; the ``max_consecutive``-th bad iteration in a row raises a
    RuntimeError naming the iteration and the last checkpoint, so no checkpoint is saved for
    it. Checkpoints saved during a shorter run of bad iterations hold the weights, buffers and
    optimizer state of the last good one.

    Args:
        max_consecutive (int): Bad iterations in a row that stop the run. Defaults to 3.
        restore_buffers (bool): Restore the model's buffers after a bad iteration; costs one
            copy of the buffers per iteration. Defaults to True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, max_consecutive: int = 3, restore_buffers: bool = True):
        if max_consecutive < 1:
            raise ValueError(f'max_consecutive must be at least 1, not {max_consecutive}')
        self.max_consecutive = max_consecutive
        self.restore_buffers = restore_buffers
        self.consecutive = 0
        self.skipped = 0  # bad iterations over the whole run
        self.window_bad = False  # the current accumulation window holds a bad loss
        self.iteration_bad = False
        self.buffers: Optional[Dict[str, torch.Tensor]] = None
        self.model = None

    # ------------------------------------------------------------------ installing the guard
    def before_train(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        if not hasattr(optim_wrapper, 'should_update'):  # OptimWrapperDict: one per module
            print_log('NonFiniteLossGuardHook guards a single OptimWrapper or AmpOptimWrapper; '
                      f'{type(optim_wrapper).__name__} is left unguarded', logger='current',
                      level=logging.WARNING)
            return
        self.model = runner.model
        original = optim_wrapper.update_params

        def update_params(loss: torch.Tensor, step_kwargs: Optional[dict] = None,
                          zero_kwargs: Optional[dict] = None) -> None:
            self.iteration_bad = self.is_bad(loss)
            self.window_bad |= self.iteration_bad
            if not self.window_bad:
                return original(loss, step_kwargs, zero_kwargs)
            # OptimWrapper.update_params, without the step.
            optim_wrapper.backward(optim_wrapper.scale_loss(loss))
            if optim_wrapper.should_update():
                optim_wrapper.zero_grad(**(zero_kwargs or {}))
                self.window_bad = False
            if self.iteration_bad:  # after backward, which may need the buffers' versions
                self.restore_model_buffers()

        optim_wrapper.update_params = update_params

    @staticmethod
    def is_bad(loss: torch.Tensor) -> bool:
        """Whether the loss is non-finite here or, under DDP, on any process."""
        bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
        if is_distributed():
            all_reduce(bad, op='max')
        return bool(bad.item())

    # ------------------------------------------------------------------ buffers
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.iteration_bad = False
        if self.restore_buffers and self.model is not None:
            self.buffers = {name: buffer.detach().clone()
                            for name, buffer in self.model.named_buffers()}

    def restore_model_buffers(self) -> None:
        if not self.buffers:
            return
        with torch.no_grad():
            for name, buffer in self.model.named_buffers():
                if name in self.buffers:
                    buffer.copy_(self.buffers[name])

    # ------------------------------------------------------------------ reporting, stopping
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.iteration_bad:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.skipped += 1
        iteration = runner.iter + 1  # as the LoggerHook counts
        terms = ', '.join(f'{name}={float(value):.4g}' for name, value in (outputs or {}).items()
                          if torch.is_tensor(value) or isinstance(value, (int, float)))
        lr = runner.optim_wrapper.get_lr()
        rates = ', '.join(f'{name}={values[0]:.3g}' for name, values in lr.items())
        print_log(f'non-finite loss at iteration {iteration} ({terms}; {rates}): update skipped '
                  f'({self.consecutive} in a row, {self.skipped} in this run)',
                  logger='current', level=logging.WARNING)
        if self.consecutive >= self.max_consecutive:
            checkpoint = runner.message_hub.get_info('last_ckpt')
            where = (f'the last checkpoint, {checkpoint}, holds the state before them: resume '
                     f'with --resume' if checkpoint else 'no checkpoint was saved before them')
            raise RuntimeError(
                f'NonFiniteLossGuardHook: {self.consecutive} consecutive non-finite losses, the '
                f'last at iteration {iteration}; training stopped ({where})')
