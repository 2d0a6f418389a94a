"""Resuming a run so that it ends where the uninterrupted run would have, bit for bit, from
a checkpoint taken at any iteration.

mmengine's Runner checkpoints restore the weights, the optimizer, the schedulers and the
iteration counters, but not the random number generators that data augmentation, dropout and
stochastic depth draw from, nor those of dataloader workers; and its epoch-based loop restarts
a resumed epoch. Here every random draw of training is a function of the run's seed and the
position, so that the position is all a checkpoint needs to hold:

* :class:`FaithfulResumeHook` seeds Python's ``random``, numpy's global generator and torch's
  generators from (seed, iteration) before every training iteration (the model's draws:
  dropout, stochastic depth, mmdet's RoI samplers, batch augmentations in the data
  preprocessor), and keeps the sampler's seed in every checkpoint.
* The data pipeline's draws are seeded per sample from its position in the sampler's stream
  (:class:`cvt_mm.engine.loops.SampleSeededDataset`), whichever worker loads it.
* The loops of :mod:`cvt_mm.engine.loops` resume at the exact batch, inside an epoch too,
  skipping the batches already trained on without loading them.
* :class:`AtomicLocalBackend` (``backend_args=dict(backend='atomic_local')``) writes every file
  to a temporary name and renames it into place, so a process killed while writing a
  checkpoint leaves the previous complete one to resume from.

Bit-identical results also need ``randomness=dict(seed=..., deterministic=True)``;
:func:`enable_faithful_resume` sets up everything else in a config.
"""
import logging
import os
import tempfile
from typing import Union

from mmengine.config import Config
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .loops import use_resumable_loops
from .random_states import capture_random_states, restore_random_states, seed_random_states

__all__ = ['AtomicLocalBackend', 'FaithfulResumeHook', 'capture_random_states',
           'enable_faithful_resume', 'restore_random_states']
SAMPLER_SEED_KEY = 'sampler_seed'


def train_sampler(runner):
    """The sampler of the train dataloader (behind a batch sampler, if it has one)."""
    loader = runner.train_dataloader
    batch_sampler = getattr(loader, 'batch_sampler', None)
    return getattr(batch_sampler, 'sampler', None) or loader.sampler


@HOOKS.register_module()
class FaithfulResumeHook(Hook):
    """Seed the global generators from the position before every iteration; keep the
    sampler's seed across a resume.

    Registered in mmengine's root registry, so configs of any scope can list it in
    ``custom_hooks`` (:func:`enable_faithful_resume` does). The seed of iteration ``i`` comes
    from (``runner.seed``, ``i``): with ``randomness.diff_rank_seed`` the ranks differ, as in
    mmengine. mmengine builds the sampler before it loads a checkpoint, so a run without
    ``randomness.seed`` (a random one) would resume with another data order: the sampler
    gets the checkpoint's seed back. A checkpoint loaded with ``load_from`` (fine-tuning, not
    resuming) changes nothing.
    """

    priority = 'VERY_HIGH'  # before any other hook of an iteration draws

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        seed_random_states((runner.seed, runner.iter))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        seed = getattr(train_sampler(runner), 'seed', None)
        if seed is not None:
            checkpoint['meta'][SAMPLER_SEED_KEY] = int(seed)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        sampler = train_sampler(runner)
        seed = checkpoint['meta'].get(SAMPLER_SEED_KEY)
        if seed is not None and getattr(sampler, 'seed', seed) != seed:
            print_log(f'the train sampler continues with the seed of the checkpoint ({seed}), '
                      f'not {sampler.seed}', logger='current', level=logging.WARNING)
            sampler.seed = seed


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
    """Make a config's runs resume bit for bit, inside an epoch too (in place).

    Adds :class:`FaithfulResumeHook`; switches mmengine's train loops to the resumable ones
    and the train dataloader to :class:`~cvt_mm.engine.loops.ResumableBatchSampler` and
    :class:`~cvt_mm.engine.loops.SampleSeededDataset` (a custom train loop stays, with a
    warning: it resumes as it does); writes checkpoints through :class:`AtomicLocalBackend`
    unless the config chose another storage backend.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') in ('FaithfulResumeHook', FaithfulResumeHook)
               for hook in hooks):
        hooks.append(dict(type='FaithfulResumeHook'))
    cfg['custom_hooks'] = hooks
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get('backend_args'):
        checkpoint_hook['backend_args'] = dict(backend='atomic_local')
    for left in use_resumable_loops(cfg):
        print_log(f'{left}: kept; its runs resume as it resumes (mid-epoch resume and '
                  'per-sample seeding need the loops and batch sampler of '
                  'cvt_mm.engine.loops)', logger='current', level=logging.WARNING)
