#!/usr/bin/env python
"""What faithful resume costs a training iteration: CONFIG trained for a few iterations with
mmengine's stock loop and data path and with ``cvt_mm.engine.enable_faithful_resume`` (what
tools/train.py does without --stock-loop), alternately, in one process.

    python tools/analysis/faithful_resume_cost.py CONFIG [--iters 10] [--warmup 2]
        [--rounds 4] [--input-size HxW] [--cfg-options KEY=VALUE ...]

Each run is an iteration loop of --warmup + --iters iterations without validation, schedulers
or checkpoints. Its figure: the median wall time from the end of one iteration to the end of
the next (data waiting included), over the iterations after the warm-up. Each round runs both,
stock first in even rounds, faithful first in odd ones. Printed per round, stock and faithful
side by side with their ratio, then the median ratio; and the time of one
``seed_random_states`` call, which FaithfulResumeHook adds to every iteration (the per-sample
seeding in the data path is timed by tools/preemption_figures.py).
"""
import argparse
import copy
import statistics
import time

from mmengine.config import DictAction
from mmengine.hooks import Hook

from cvt_mm.engine import build_runner, enable_faithful_resume, load_config
from cvt_mm.engine.random_states import seed_random_states


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=10, help='iterations timed per run')
    parser.add_argument('--warmup', type=int, default=2,
                        help='iterations left out per run (at least 1)')
    parser.add_argument('--rounds', type=int, default=4,
                        help='pairs of runs (stock and faithful, alternately first)')
    parser.add_argument('--input-size', metavar='HxW',
                        help="train at this input size: every Resize of the train pipeline "
                        'set to it, aspect ratio not kept (e.g. 800x1216)')
    parser.add_argument('--work-dir', default='work_dirs/faithful_resume_cost')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


class IterationEnds(Hook):
    """Records the moment each training iteration ends."""

    priority = 'LOWEST'

    def __init__(self):
        self.ends = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.ends.append(time.perf_counter())


def timing_config(args):
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.train_cfg = dict(by_epoch=False, max_iters=args.warmup + args.iters,
                         val_interval=10**9)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**9,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    if args.input_size:
        height, width = (int(side) for side in args.input_size.lower().split('x'))
        for transform in cfg.train_dataloader.dataset.pipeline:
            if transform['type'] == 'Resize':
                transform.update(scale=(width, height), keep_ratio=False)
    return cfg


def median_iteration(cfg, name: str, warmup: int) -> float:
    cfg = copy.deepcopy(cfg)
    cfg.experiment_name = name  # runners of one process must not share a logger
    runner = build_runner(cfg)
    ends = IterationEnds()
    runner.register_hook(ends)
    runner.train()
    return statistics.median(b - a for a, b in zip(ends.ends[warmup - 1:], ends.ends[warmup:]))


def seeding_call_seconds(calls: int = 2000) -> float:
    start = time.perf_counter()
    for iteration in range(calls):
        seed_random_states((0, iteration))
    return (time.perf_counter() - start) / calls


def main(argv=None):
    args = parse_args(argv)
    stock = timing_config(args)
    faithful = copy.deepcopy(stock)
    enable_faithful_resume(faithful)
    rows = []
    for round_ in range(args.rounds):
        # Which of the two goes first alternates: a process's later runs can be faster
        # (warm caches, allocator) or slower (memory growth).
        pair = [('stock', stock), ('faithful', faithful)][::(-1) ** round_]
        seconds = {name: median_iteration(cfg, f'{name}_{round_}', args.warmup)
                   for name, cfg in pair}
        rows.append((seconds['stock'], seconds['faithful']))
    size = args.input_size or 'the config\'s input size'
    print(f'\n{args.config} at {size}, batch {stock.train_dataloader.batch_size}, '
          f'{stock.train_dataloader.get("num_workers", 0)} workers; median s/iteration of '
          f'{args.iters} iterations after {args.warmup}')
    print('round  stock     faithful  faithful/stock')
    for round_, (stock_s, faithful_s) in enumerate(rows):
        print(f'{round_:<6} {stock_s:<9.4f} {faithful_s:<9.4f} {faithful_s / stock_s:.3f}')
    ratio = statistics.median(faithful_s / stock_s for stock_s, faithful_s in rows)
    print(f'median faithful/stock: {ratio:.3f}')
    print(f'seed_random_states (FaithfulResumeHook, once an iteration): '
          f'{seeding_call_seconds() * 1e6:.0f} us')


if __name__ == '__main__':
    main()
