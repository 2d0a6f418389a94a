#!/usr/bin/env python
"""Measure what a preemption costs a run of CONFIG: the ranks' per-iteration agreement, the
seconds from the signal to the exit, and the iterations lost.

    python tools/preemption_figures.py CONFIG [--iteration 5] [--signal TERM]
        [--work-dir DIR] [--cfg-options KEY=VALUE ...] [--calls 2000]

1. The agreement after each iteration (PreemptionHook.agreed_signal): mean time of a call on
   one process (no collective) and on two gloo processes on this machine (an all-reduce of a
   one-element tensor).
2. tools/train.py CONFIG with PreemptionDrillHook: the process sends itself the signal as
   iteration --iteration starts. Reported: the exit status, the seconds from the signal to the
   checkpoint written (that iteration is finished first) and to the process's end, the
   iterations in the checkpoint, the iterations lost (done before the signal but not in the
   checkpoint), and the median iteration time of the run.
3. What SampleSeededDataset adds to loading one sample.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _cli  # noqa: F401  (before the libraries: quiets known third-party start-up notices)

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config, DictAction

from cvt_mm.engine import PreemptionHook
from cvt_mm.engine.loops import SampleSeededDataset
from cvt_mm.engine.random_states import seed_random_states


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--iteration', type=int, default=5,
                        help='the iteration during which the signal arrives')
    parser.add_argument('--signal', default='SIGTERM')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/preemption_figures'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--calls', type=int, default=2000, help='agreement calls timed')
    return parser.parse_args(argv)


def time_agreement(calls: int) -> float:
    """Mean seconds of one PreemptionHook.agreed_signal() call in this process."""
    hook = PreemptionHook(signals=())
    for _ in range(10):
        hook.agreed_signal()
    start = time.perf_counter()
    for _ in range(calls):
        hook.agreed_signal()
    return (time.perf_counter() - start) / calls


def time_sample_seeding(calls: int) -> tuple:
    """Mean seconds SampleSeededDataset adds to loading one sample: in the main process
    (seeding the generators, restoring them after) and in a worker (seeding only)."""
    seeded = SampleSeededDataset([0] * calls)
    start = time.perf_counter()
    for index in range(calls):
        seeded[index]
    plain = (time.perf_counter() - start) / calls
    start = time.perf_counter()
    for index in range(calls):
        seeded[(index, (0, 0, 0, index, 0))]
    main_process = (time.perf_counter() - start) / calls - plain
    start = time.perf_counter()
    for index in range(calls):
        seed_random_states((0, 0, 0, index, 0), cuda=False)
    return main_process, (time.perf_counter() - start) / calls


def agreement_worker(rank: int, port: int, calls: int, results) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=2)
    results[rank] = time_agreement(calls)
    dist.destroy_process_group()


def time_two_process_agreement(calls: int) -> float:
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(agreement_worker, args=(port, calls, results), nprocs=2)
    return max(results.values())


def preempted_run(args) -> dict:
    args.work_dir.mkdir(parents=True, exist_ok=True)
    signal_log = args.work_dir / 'signal_sent'
    signal_log.unlink(missing_ok=True)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.default_hooks.logger.interval = 1  # every iteration's time in the log
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(
        type='PreemptionDrillHook', iteration=args.iteration, signal=args.signal,
        signal_log=str(signal_log.resolve()))]
    config = args.work_dir / 'preempted_config.py'
    cfg.dump(config)
    result = subprocess.run([sys.executable, str(Path(__file__).parent / 'train.py'),
                             str(config), '--work-dir', str(args.work_dir)],
                            capture_output=True, text=True)
    ended = time.time()
    if not signal_log.is_file():
        sys.exit(f'the run ended (status {result.returncode}) before iteration '
                 f'{args.iteration}:\n{result.stderr[-3000:]}')
    sent = float(signal_log.read_text().split()[0])
    checkpoint = (args.work_dir / 'last_checkpoint').read_text().strip()
    saved = torch.load(checkpoint, map_location='cpu', weights_only=False)['meta']['iter']
    written = os.path.getmtime(checkpoint)
    logs = sorted(args.work_dir.glob('*/vis_data/scalars.json'), key=os.path.getmtime)
    times = [json.loads(line)['time'] for line in logs[-1].read_text().splitlines()
             if '"time"' in line] if logs else []
    return dict(status=result.returncode, seconds=ended - sent, to_save=written - sent,
                saved=saved,
                lost=max(0, args.iteration - 1 - saved),
                iteration_time=statistics.median(times) if times else float('nan'))


def main(argv=None):
    args = parse_args(argv)
    seeding_main, seeding_worker = time_sample_seeding(args.calls)
    one = time_agreement(args.calls)
    two = time_two_process_agreement(args.calls)
    run = preempted_run(args)
    print(f'CPU: {torch.backends.cpu.get_cpu_capability()}, load average '
          f'{os.getloadavg()[0]:.2f}')
    print(f'agreement per iteration: {one * 1e6:.1f} us on 1 process (no collective), '
          f'{two * 1e6:.1f} us on 2 gloo processes; median iteration {run["iteration_time"]:.3f}'
          f' s ({two / run["iteration_time"] * 100:.3f}% of it)')
    print(f'per-sample seeding of the pipeline: {seeding_worker * 1e6:.1f} us a sample in a '
          f'worker, {seeding_main * 1e6:.1f} us in the main process (num_workers=0)')
    print(f'{args.signal} during iteration {args.iteration}: exit status {run["status"]}, '
          f'{run["to_save"]:.2f} s from the signal to the checkpoint written, '
          f'{run["seconds"]:.2f} s to the exit; checkpoint after iteration '
          f'{run["saved"]}, {run["lost"]} iterations lost')


if __name__ == '__main__':
    main()
