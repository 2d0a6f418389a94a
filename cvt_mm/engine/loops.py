"""Training loops that resume inside an epoch, and the data path that makes it exact.

mmengine's ``EpochBasedTrainLoop`` restarts a resumed epoch from its first batch, and its
``IterBasedTrainLoop`` skips the batches already trained on by loading them. Here:

* :class:`ResumableBatchSampler` wraps the train dataloader's batch sampler (any: torch's,
  mmdet's ``AspectRatioBatchSampler``, ...). Told to skip N batches, it draws their indices
  from the sampler and drops them, so no image of a skipped batch is read. Each index it
  yields carries the draw's position (sampler seed, rank, sampler epoch, batch, slot).
* :class:`SampleSeededDataset` runs each sample's loading and pipeline with Python's
  ``random``, numpy's global generator and torch's seeded from that position, and puts the
  caller's states back after. Which worker loads a sample, how many there are, whether they
  persist and how often the run restarted no longer change a random decision of the pipeline.
* :class:`ResumableEpochBasedTrainLoop` and :class:`ResumableIterBasedTrainLoop` are
  mmengine's loops, but resume at the exact batch through the batch sampler.

:func:`cvt_mm.engine.enable_faithful_resume` puts all of them into a config.
"""
import logging
from typing import Iterator, List, Optional, Sequence, Union

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, DATASETS, LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import BatchSampler, DataLoader, get_worker_info

from cvt_mm.datasets.wrapper import DatasetWrapper, type_name, wrapper_chain

from .random_states import capture_random_states, restore_random_states, seed_random_states


@DATA_SAMPLERS.register_module()
class ResumableBatchSampler:
    """A batch sampler that can skip batches without loading them; its indices carry their
    position in the run.

    Args:
        sampler: The sampler (mmengine's ``build_dataloader`` passes it).
        batch_size (int): Passed by ``build_dataloader`` as well.
        batch_sampler (dict, optional): The batch sampler to wrap, built with ``sampler`` and
            ``batch_size`` in the current scope. Defaults to None: torch's ``BatchSampler``.
        drop_last (bool): torch's ``BatchSampler`` only. Defaults to False.
    """

    def __init__(self, sampler, batch_size: int, batch_sampler: Optional[dict] = None,
                 drop_last: bool = False) -> None:
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler, default_args=dict(sampler=sampler, batch_size=batch_size))
        self.sampler = sampler  # where mmengine's DistSamplerSeedHook looks for set_epoch
        self.batch_size = batch_size
        self._skip = 0
        self._held = False

    def skip_next(self, batches: int) -> None:
        """Make the next pass start with ``batches`` batches drawn and dropped."""
        self._skip = batches
        self._held = False

    def hold(self) -> None:
        """Make the next pass yield nothing (until :meth:`skip_next`), so that an iterator
        made before the resume position is known loads nothing."""
        self._held = True

    def position_key(self) -> List[int]:
        """Seed, rank and epoch of the sampler: the start of each draw's position."""
        seed = getattr(self.sampler, 'seed', None)
        if seed is None:
            seed = torch.initial_seed()
        rank = getattr(self.sampler, 'rank', None)
        return [int(seed), get_rank() if rank is None else int(rank),
                int(getattr(self.sampler, 'epoch', 0))]

    def __iter__(self) -> Iterator[list]:
        if self._held:
            return
        skip, self._skip = self._skip, 0
        key = self.position_key()
        for number, batch in enumerate(self.batch_sampler):
            if number < skip:
                continue
            yield [(index, (*key, number, slot)) for slot, index in enumerate(batch)]

    def __len__(self) -> int:
        return len(self.batch_sampler)


@DATASETS.register_module()
class SampleSeededDataset(DatasetWrapper):
    """Load each sample with the global generators seeded from its position.

    Indexed with ``(index, key)`` (what :class:`ResumableBatchSampler` yields), it seeds
    Python's ``random``, numpy's global generator and torch's CPU generator from ``key``
    (through numpy's ``SeedSequence``) and loads ``dataset[index]``; in the main process
    (``num_workers=0``) it then restores the generators' previous states. Indexed with a plain
    index, it is ``dataset[index]``. mmcv's, mmdet's, mmseg's and mmpretrain's transforms draw
    from these generators.

    Args:
        dataset (dict | Dataset): The data set, or its config (built in the current scope).
    """

    def __init__(self, dataset) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    def __getitem__(self, item: Union[int, tuple]):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, key = item
        if get_worker_info() is not None:  # a worker: its generators serve this data set only
            seed_random_states(key, cuda=False)
            return self.dataset[index]
        states = capture_random_states(cuda=False)
        seed_random_states(key, cuda=False)
        try:
            return self.dataset[index]
        finally:
            restore_random_states(states)


def resumable_batch_sampler(dataloader: DataLoader) -> Optional[ResumableBatchSampler]:
    sampler = getattr(dataloader, 'batch_sampler', None)
    return sampler if isinstance(sampler, ResumableBatchSampler) else None


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop``, resuming at the batch where the run stopped.

    A checkpoint saved inside epoch ``e`` after ``i`` iterations resumes epoch ``e`` at its
    batch ``i - e * len(dataloader)`` (mmengine's checkpoint meta holds ``epoch`` and ``iter``;
    every epoch has the same number of batches). Its first batches are skipped by the batch
    sampler (:class:`ResumableBatchSampler`), without loading them; hooks see the batch index
    they would have seen. Arguments: those of ``EpochBasedTrainLoop``.
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)
        if not 0 <= done <= len(self.dataloader):
            raise RuntimeError(
                f'cannot resume epoch {self._epoch} at iteration {self._iter}: an epoch has '
                f'{len(self.dataloader)} batches now (the batch size or the data changed since '
                'the checkpoint)')
        batch_sampler = resumable_batch_sampler(self.dataloader)
        if done and batch_sampler is None:
            print_log(f'resuming inside epoch {self._epoch} needs ResumableBatchSampler '
                      '(cvt_mm.engine.enable_faithful_resume); this epoch restarts from its '
                      'first batch', logger='current', level=logging.WARNING)
            self._iter -= done
            done = 0
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        if batch_sampler is not None:
            batch_sampler.skip_next(done)
        for idx, data_batch in enumerate(self.dataloader, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop``, skipping the batches already trained on by drawing
    their indices only (mmengine's loop loads and drops them). Arguments: those of
    ``IterBasedTrainLoop``.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, dict], max_iters: int,
                 **kwargs) -> None:
        if isinstance(dataloader, dict):  # as BaseLoop builds it
            dataloader = runner.build_dataloader(
                dataloader, seed=runner.seed,
                diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
        batch_sampler = resumable_batch_sampler(dataloader)
        if batch_sampler is not None:
            batch_sampler.hold()  # the iterator mmengine's loop makes now loads nothing
        super().__init__(runner, dataloader, max_iters, **kwargs)

    def _start_data(self) -> None:
        """The dataloader iterator, positioned after the batches already trained on."""
        batch_sampler = resumable_batch_sampler(self.dataloader)
        if batch_sampler is None:
            for _ in range(self._iter):  # mmengine's way: load and drop
                next(self.dataloader_iterator)
            return
        if isinstance(batch_sampler.sampler, InfiniteSampler):
            passes, skip = 0, self._iter  # one stream, untouched so far (held)
        else:  # a finite sampler: mmengine's iterator restarts it, with the next epoch
            passes, skip = divmod(self._iter, len(self.dataloader))
            if hasattr(batch_sampler.sampler, 'set_epoch'):
                batch_sampler.sampler.set_epoch(passes)
        batch_sampler.skip_next(skip)
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        self.dataloader_iterator._epoch = passes

    def run(self) -> torch.nn.Module:
        """mmengine's ``IterBasedTrainLoop.run``, with :meth:`_start_data` for its skip."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(f'resuming after iteration {self._iter}: the batch sampler skips the '
                      'batches already trained on', logger='current')
        self._start_data()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model


RESUMABLE_LOOPS = {'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop',
                   'IterBasedTrainLoop': 'ResumableIterBasedTrainLoop'}


def use_resumable_loops(cfg) -> Sequence[str]:
    """Switch a config's train loop and train dataloader to the classes above (in place);
    returns what could not be switched, for a warning."""
    left = []
    train_cfg = cfg.get('train_cfg')
    if train_cfg is not None:
        loop = train_cfg.get('type')
        if loop is None:
            loop = 'EpochBasedTrainLoop' if train_cfg.pop('by_epoch', False) else \
                'IterBasedTrainLoop'
        train_cfg['type'] = RESUMABLE_LOOPS.get(loop, loop)
        if train_cfg['type'] not in RESUMABLE_LOOPS.values():
            left.append(f'train loop {loop}')
    loader = cfg.get('train_dataloader')
    if loader is not None:
        dataset = loader.get('dataset')
        if isinstance(dataset, dict) and not any(
                type_name(config) == 'SampleSeededDataset' for config in wrapper_chain(dataset)):
            loader['dataset'] = dict(type='SampleSeededDataset', dataset=dataset)
        batch_sampler = loader.get('batch_sampler')
        if batch_sampler is None or (isinstance(batch_sampler, dict) and
                                     batch_sampler.get('type') != 'ResumableBatchSampler'):
            loader['batch_sampler'] = dict(type='ResumableBatchSampler',
                                           batch_sampler=batch_sampler,
                                           drop_last=loader.pop('drop_last', False))
        elif not isinstance(batch_sampler, dict):
            left.append('a train batch sampler given as an object')
    return left
