"""Resuming a run so that it ends where the uninterrupted run would have, bit for bit.

mmengine's Runner checkpoints restore the weights, the optimizer, the schedulers and the
iteration counters, but not the random number generators that data augmentation, dropout and
stochastic depth draw from, so a resumed run takes other random decisions than the run it
continues. Two additions close the gap:

* :class:`FaithfulResumeHook` stores the states of Python's ``random``, numpy's global
  generator and torch's CPU and CUDA generators in every checkpoint it sees saved, and puts them
  back at the point where training continues: before the next epoch (epoch-based loops), or
  before the next batch is fetched (iteration-based loops, after mmengine has advanced the
  dataloader past the batches already trained on). It restores them at that same point in the
  uninterrupted run too, so whatever runs between a save and that point (a validation pass,
  say, which draws a dataloader seed) cannot make the two runs differ.
* :class:`AtomicLocalBackend` (``backend_args=dict(backend='atomic_local')``) writes every file
  to a temporary name and renames it into place, so a process killed while writing a
  checkpoint, or ``last_checkpoint``, leaves the previous complete one to resume from.

Bit-identical results also need ``randomness=dict(seed=..., deterministic=True)`` and
``num_workers=0`` (dataloader workers keep their own generators, which a checkpoint cannot
capture); :func:`enable_faithful_resume` sets up both additions in a config.
"""
import os
import random
import tempfile
from typing import Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

RANDOM_STATES_KEY = 'random_states'


def capture_random_states() -> dict:
    """The states of every global generator training draws from."""
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    """Put back what :func:`capture_random_states` captured."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


class _RestoringIterator:
    """Wraps an iteration-based loop's dataloader iterator and restores given random states
    just before a given fetch (counted from 0 over this process's fetches)."""

    def __init__(self, iterator):
        self.iterator = iterator
        self.fetched = 0
        self.pending = None  # (fetch index, states)

    def restore_before(self, fetch_index: int, states: dict) -> None:
        self.pending = (fetch_index, states)

    def __iter__(self):
        return self

    def __next__(self):
        if self.pending is not None and self.pending[0] == self.fetched:
            restore_random_states(self.pending[1])
            self.pending = None
        self.fetched += 1
        return next(self.iterator)


@HOOKS.register_module()
class FaithfulResumeHook(Hook):
    """Save the random states with each checkpoint and restore them where training continues.

    Registered in mmengine's root registry, so configs of any scope can list it in
    ``custom_hooks`` (:func:`enable_faithful_resume` does). A checkpoint loaded with
    ``load_from`` (fine-tuning, not resuming) leaves the random states alone.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        # (states, index of the fetch to restore them before) for the next continuation point.
        self._pending: Optional[tuple] = None
        self._iterator: Optional[_RestoringIterator] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = capture_random_states()
        checkpoint[RANDOM_STATES_KEY] = states
        # meta['iter'] is the number of iterations done, i.e. of batches fetched so far.
        self._schedule(states, checkpoint['meta']['iter'])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        states = checkpoint.get(RANDOM_STATES_KEY)
        if states is None:
            runner.logger.warning('the checkpoint holds no random states (written without '
                                  'FaithfulResumeHook): the resumed run will draw other '
                                  'random numbers than the original one')
            return
        self._schedule(states, checkpoint['meta']['iter'])

    def _schedule(self, states: dict, fetch_index: int) -> None:
        if self._iterator is not None:
            self._iterator.restore_before(fetch_index, states)
        else:
            self._pending = (states, fetch_index)

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            # Installed before the first fetch, so that fetches are counted from the start;
            # mmengine's resume advances this same iterator past the batches already done.
            self._iterator = _RestoringIterator(loop.dataloader_iterator)
            loop.dataloader_iterator = self._iterator
            if self._pending is not None:
                self._iterator.restore_before(self._pending[1], self._pending[0])
                self._pending = None

    def before_train_epoch(self, runner) -> None:
        if self._iterator is None and self._pending is not None:
            restore_random_states(self._pending[0])
            self._pending = None


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing each file whole or not at all.

    The data goes to a temporary file in the target's directory, is flushed to disk, and is
    then renamed over the target (an atomic replacement on POSIX file systems).
    """

    def put(self, obj: bytes, filepath) -> None:
        self._atomic_write(filepath, obj, 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self._atomic_write(filepath, obj.encode(encoding), 'wb')

    @staticmethod
    def _atomic_write(filepath, data: bytes, mode: str) -> None:
        directory = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        handle, temp_path = tempfile.mkstemp(dir=directory,
                                             prefix=f'.{os.path.basename(filepath)}.',
                                             suffix='.tmp')
        try:
            with os.fdopen(handle, mode) as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_path, filepath)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise


register_backend('atomic_local', AtomicLocalBackend, force=True)


def enable_faithful_resume(cfg: Union[Config, dict]) -> None:
    """Add :class:`FaithfulResumeHook` and atomic checkpoint writes to a config (in place).

    The checkpoint hook keeps any storage backend the config chose; only the default (local
    files) becomes :class:`AtomicLocalBackend`.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') in ('FaithfulResumeHook', FaithfulResumeHook)
               for hook in hooks):
        hooks.append(dict(type='FaithfulResumeHook'))
    cfg['custom_hooks'] = hooks
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get('backend_args'):
        checkpoint_hook['backend_args'] = dict(backend='atomic_local')
