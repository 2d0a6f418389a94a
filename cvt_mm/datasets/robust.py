"""Training past bad samples: the opt-in :class:`SkipBadSamples` data set wrapper.

A sample whose loading or pipeline raises is replaced by the next index (then the one after,
...), so that a run with the same seed sees the same replacements. Each bad sample is logged
once, naming its file(s), and :class:`SkippedSamplesHook` lists them all after training. Both
are registered in mmengine's root registries, which mmdet's, mmseg's and mmpretrain's
registries fall back to. Switched on in a config with::

    train_dataloader = dict(dataset=dict(type='SkipBadSamples', max_skips=10,
                                         dataset=dict(type='CocoDataset', ...)))
    custom_hooks = [dict(type='SkippedSamplesHook')]

(:func:`skip_bad_samples` does both to a loaded config). With ``max_skips=0`` nothing is
skipped, and the first failure is raised as one line naming its file.
"""
import json
import logging
import os.path as osp
from typing import List, Optional, Union

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import DATASETS, HOOKS

from .checks import image_problem
from .wrapper import DatasetWrapper, wrap_inside_position_indexed

# The data info keys of the files a sample is read from (images, label maps).
FILE_KEYS = ('img_path', 'seg_map_path')
RECORD_NAME = 'skipped_samples.jsonl'


def sample_files(dataset, index: int) -> List[str]:
    """The files sample ``index`` of ``dataset`` is read from, from its data info."""
    try:
        info = dataset.get_data_info(index)
    except Exception:  # a data set without data infos: nothing to name
        return []
    return [info[key] for key in FILE_KEYS if isinstance(info.get(key), str)]


def culprits(files: List[str]) -> List[str]:
    """Of a failed sample's files, those that do not decode (all of them if every one does)."""
    broken = [path for path in files if image_problem(path) is not None]
    return broken or files


class BadSampleError(RuntimeError):
    """A sample failed to load and was not (or could no longer be) skipped."""


@DATASETS.register_module()
class SkipBadSamples(DatasetWrapper):
    """Replace samples whose loading or pipeline raises by the next good index.

    Args:
        dataset (dict | Dataset): The data set, or its config (built in the current default
            scope, so ``type='CocoDataset'`` under mmdet).
        max_skips (int): The most distinct bad samples to replace; one more raises a
            :class:`BadSampleError` (so many bad files mean the data needs fixing:
            tools/check_dataset.py lists them all). 0 replaces none and raises the first
            failure as one line naming its file. Defaults to 10.
        record_file (str, optional): A JSON-lines file that every bad sample is appended to,
            shared by dataloader worker processes (each has its own copy of this wrapper), so
            that a sample is logged once per run and :class:`SkippedSamplesHook` can list them.
            Defaults to None: :class:`SkippedSamplesHook` sets ``<log_dir>/skipped_samples.jsonl``
            before training; without the hook, bad samples are remembered per process only.
    """

    def __init__(self, dataset, max_skips: int = 10, record_file: Optional[str] = None):
        if max_skips < 0:
            raise ValueError(f'max_skips must be 0 or more, not {max_skips}')
        if isinstance(dataset, dict):
            dataset = build_named(dataset)
        self.dataset = dataset
        self.max_skips = max_skips
        self.record_file = record_file
        self.skipped = {}  # index -> record, in this process

    def __getitem__(self, index: int):
        length = len(self.dataset)
        for offset in range(length):
            current = (index + offset) % length
            try:
                return self.dataset[current]
            except Exception as error:
                record = self.failure_record(current, error)
                if self.max_skips == 0:
                    raise BadSampleError(record['message']) from error
                self.remember(record)
        raise BadSampleError(f'every one of the {length} samples failed to load')

    # ------------------------------------------------------------------ bookkeeping
    def failure_record(self, index: int, error: Exception) -> dict:
        files = culprits(sample_files(self.dataset, index))
        reason = ' '.join(f'{type(error).__name__}: {error}'.split())  # one line
        named = ', '.join(files) if files else f'sample {index}'
        return dict(index=index, files=files,
                    message=f'{named}: failed to load (sample {index}): {reason}')

    def known_records(self) -> dict:
        """Index -> record of the bad samples seen so far, by every process that records."""
        records = dict(self.skipped)
        if self.record_file and osp.isfile(self.record_file):
            with open(self.record_file) as file:
                for line in file:
                    if line.strip():
                        record = json.loads(line)
                        records.setdefault(record['index'], record)
        return records

    def remember(self, record: dict) -> None:
        known = self.known_records()
        if record['index'] not in known:
            if len(known) >= self.max_skips:
                raise BadSampleError(
                    f'more than max_skips={self.max_skips} bad samples; the last: '
                    f'{record["message"]} (list them all with tools/check_dataset.py)')
            print_log(f'skipping a bad sample, replaced by the next one: {record["message"]}',
                      logger='current', level=logging.WARNING)
            if self.record_file:
                # One write per line, appended: worker processes may write concurrently.
                with open(self.record_file, 'a') as file:
                    file.write(json.dumps(record) + '\n')
        self.skipped.setdefault(record['index'], record)


def build_named(dataset_cfg: dict):
    """Build a data set config; a failure (e.g. a truncated annotation file) names the file."""
    try:
        return DATASETS.build(dataset_cfg)
    except Exception as error:
        ann_file = dataset_cfg.get('ann_file')
        if not ann_file:
            raise
        path = osp.join(dataset_cfg.get('data_root') or '', ann_file)
        reason = ' '.join(f'{type(error).__name__}: {error}'.split())
        raise BadSampleError(f'{path}: building {dataset_cfg.get("type")} from this annotation '
                             f'file failed: {reason}') from error


def find_wrappers(dataset) -> List[SkipBadSamples]:
    """The :class:`SkipBadSamples` inside a data set (and inside its wrappers)."""
    if isinstance(dataset, SkipBadSamples):
        return [dataset]
    inner = getattr(dataset, 'datasets', None) or []
    if getattr(dataset, 'dataset', None) is not None:
        inner = [dataset.dataset]
    return [wrapper for child in inner for wrapper in find_wrappers(child)]


@HOOKS.register_module()
class SkippedSamplesHook(Hook):
    """Lists the samples :class:`SkipBadSamples` replaced, after training.

    Before training it points the wrappers of the train dataloader at one record file in the
    run's log directory (``skipped_samples.jsonl``), before any dataloader worker starts.
    """

    priority = 'BELOW_NORMAL'

    def before_train(self, runner) -> None:
        self.wrappers = find_wrappers(runner.train_dataloader.dataset)
        if not self.wrappers:
            print_log('SkippedSamplesHook: the train data set has no SkipBadSamples wrapper',
                      logger='current', level=logging.WARNING)
        self.record_file = osp.join(runner.log_dir, RECORD_NAME)
        for wrapper in self.wrappers:
            wrapper.record_file = wrapper.record_file or self.record_file

    def after_train(self, runner) -> None:
        records = {}
        for wrapper in self.wrappers:
            records.update(wrapper.known_records())
        if not records:
            print_log('no samples were skipped', logger='current')
            return
        lines = '\n'.join(f'  {records[index]["message"]}' for index in sorted(records))
        print_log(f'{len(records)} bad samples were skipped (replaced by the next index); '
                  f'record: {self.record_file}\n{lines}', logger='current',
                  level=logging.WARNING)


def skip_bad_samples(cfg: Union[Config, dict], max_skips: int = 10) -> None:
    """Switch a config's training on to :class:`SkipBadSamples` with :class:`SkippedSamplesHook`.

    Args:
        cfg (Config | dict): A loaded config; its ``train_dataloader.dataset`` is wrapped (in
            place) unless already wrapped, inside
            :class:`~cvt_mm.engine.loops.SampleSeededDataset` if
            :func:`~cvt_mm.engine.enable_faithful_resume` put one there (it takes the batch
            sampler's ``(index, key)`` pairs, this wrapper plain indices).
        max_skips (int): See :class:`SkipBadSamples`. Defaults to 10.
    """
    wrapper = wrap_inside_position_indexed(cfg['train_dataloader'], 'SkipBadSamples')
    wrapper['max_skips'] = max_skips
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == 'SkippedSamplesHook' for hook in hooks):
        hooks.append(dict(type='SkippedSamplesHook'))
    cfg['custom_hooks'] = hooks

