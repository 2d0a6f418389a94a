"""Stopping a run on a preemption signal without losing an iteration.

What tools/train.py does (the interface the launchers build on; docs/long_runs.md,
"Preemption"):

* On a preemption signal, SIGTERM or SIGUSR1 by default (``--preempt-signals``, or the
  ``signals`` of :class:`PreemptionHook`), received by any rank, every rank finishes the
  iteration it is in, and all of them stop after the same one: the ranks agree after each
  iteration (one all-reduce of a one-element flag; no collective on one process).
* The Runner's own ``save_checkpoint`` then writes ``iter_<N>.pth`` (N: iterations done) into
  the checkpoint hook's directory, with its storage backend (atomic local writes under
  tools/train.py), and ``last_checkpoint`` is pointed at it. The checkpoint holds the exact
  position: epoch and iteration (the loops of :mod:`cvt_mm.engine.loops` resume inside an
  epoch), the sampler's seed; every random draw of training is a function of the seed and the
  position (:mod:`cvt_mm.engine.resume`).
* Every rank exits with :data:`PREEMPTED_EXIT_STATUS`, 75 (``EX_TEMPFAIL`` of sysexits.h:
  "try again"); ``tools/train.py --resume`` continues from it. A run that finishes exits 0.
* A second preemption signal ends the process at once with status 128 + the signal's number
  (143 for SIGTERM, 138 for SIGUSR1), as a shell reports a process killed by the signal;
  the last complete checkpoint stays what ``last_checkpoint`` names.

Dataloader workers ignore the preemption signals of others than their main process (Slurm
and torchrun signal every process of the job; a worker killed by one would fail the run before
its checkpoint); their main process still ends them.
"""
import logging
import os
import signal
import sys
import threading
import time
from typing import Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.dist import all_reduce, get_rank, is_distributed, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS, HOOKS

PREEMPTED_EXIT_STATUS = 75  # sysexits.h EX_TEMPFAIL: a temporary failure, try again
DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1')
CHECKPOINT_NAME = 'iter_{}.pth'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class Preempted(Exception):
    """Training stopped on a preemption signal, after saving its position."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: Optional[str]):
        self.signal_name = signal_name
        self.iteration = iteration
        self.checkpoint = checkpoint
        where = (f'checkpoint {checkpoint}' if checkpoint else
                 'nothing trained since the last checkpoint')
        super().__init__(f'{signal_name}: stopped after iteration {iteration} ({where}); '
                         'continue with tools/train.py ... --resume')


def signal_number(entry: Union[str, int]) -> signal.Signals:
    """A signal from its name ('SIGTERM', 'TERM', 'usr1') or number."""
    if not isinstance(entry, str):
        return signal.Signals(entry)
    name = entry.strip().upper()
    name = name if name.startswith('SIG') else f'SIG{name}'
    if name not in signal.Signals.__members__:
        raise ValueError(f'preemption signal {entry!r}: no such signal')
    return signal.Signals[name]


def parse_signals(signals: Union[str, Sequence[Union[str, int]], None]) -> tuple:
    """Catchable signals from names or numbers, or one comma-separated string of names;
    'none', an empty list or None: none."""
    if signals is None:
        return ()
    if isinstance(signals, str):
        signals = [name for name in signals.split(',')
                   if name.strip() and name.strip().lower() != 'none']
    parsed = []
    for entry in signals:
        number = signal_number(entry)
        if number in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f'preemption signal {number.name} cannot be caught')
        parsed.append(number)
    return tuple(dict.fromkeys(parsed))


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop every rank after the same iteration on a preemption signal, with a checkpoint.

    The signal handlers are installed when the hook is built (in the Runner's constructor, in
    the main thread, before training starts); the first signal only sets a flag, the second
    exits at once (status 128 + its number). After every training iteration (priority LOWEST:
    after the optimizer step, the schedulers, the logger and the checkpoint hook) the ranks
    all-reduce the flag (MAX); when any rank has it, all save the position through the
    Runner's ``save_checkpoint`` and raise :class:`Preempted`, which tools/train.py turns into
    exit status :data:`PREEMPTED_EXIT_STATUS` after leaving the process group. With gradient
    accumulation the stop waits for the end of the accumulation window, whose gradients a
    checkpoint does not hold. A signal during the last iteration lets the run end as usual
    (its final validation and checkpoint), with status 0.

    Args:
        signals (str | Sequence): See :func:`parse_signals`. Defaults to SIGTERM and SIGUSR1.
    """

    priority = 'LOWEST'

    def __init__(self, signals: Union[str, Sequence[Union[str, int]]] = DEFAULT_SIGNALS):
        self.signals = parse_signals(signals)
        self.received: Optional[int] = None
        for number in self.signals:
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, frame) -> None:
        if self.received is not None:
            sys.stderr.write(f'second preemption signal ({signal.Signals(number).name}): '
                             f'exiting at once with status {128 + number}; the last complete '
                             'checkpoint is the one last_checkpoint names\n')
            sys.stderr.flush()
            os._exit(128 + number)
        self.received = number

    def agreed_signal(self) -> Optional[int]:
        """The signal any rank received (the highest number), or None; all ranks take part."""
        if not is_distributed():
            return self.received
        flag = torch.tensor([self.received or 0], dtype=torch.int64)
        all_reduce(flag, op='max')
        return int(flag.item()) or None

    def before_train(self, runner) -> None:
        # A signal during start-up (building, loading the checkpoint): nothing new to save.
        number = self.agreed_signal()
        if number is not None:
            raise Preempted(signal.Signals(number).name, runner.iter, None)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        number = self.agreed_signal()
        if number is None:
            return
        done = runner.iter + 1
        if done >= runner.max_iters:
            return  # the last iteration: the run ends (final validation, checkpoint) anyway
        counts = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if counts > 1 and done % counts:
            return  # inside a gradient accumulation window: stop at its end
        name = signal.Signals(number).name
        print_log(f'{name}: saving the position after iteration {done} and stopping',
                  logger='current', level=logging.WARNING)
        checkpoint = save_position(runner)
        raise Preempted(name, done, checkpoint)


def save_position(runner) -> str:
    """Save a checkpoint after the current iteration, as the checkpoint hook would save one
    by iteration, and point ``last_checkpoint`` at it; returns its path. Called on every rank
    (sharded strategies gather from all of them)."""
    hook = next((hook for hook in runner.hooks if isinstance(hook, CheckpointHook)), None)
    filename = CHECKPOINT_NAME.format(runner.iter + 1)
    if hook is None:
        out_dir, backend_args, kwargs = runner.work_dir, None, {}
        path = os.path.join(out_dir, filename)
    else:
        out_dir, backend_args = hook.out_dir, hook.backend_args
        kwargs = dict(hook.args, file_client_args=hook.file_client_args,
                      save_optimizer=hook.save_optimizer,
                      save_param_scheduler=hook.save_param_scheduler)
        path = hook.file_backend.join_path(out_dir, filename)
    if runner.message_hub.get_info('last_ckpt') == path:
        return path  # the checkpoint hook saved this iteration already
    runner.save_checkpoint(out_dir, filename, meta=None, by_epoch=False,
                           backend_args=backend_args, **kwargs)
    runner.message_hub.update_info('last_ckpt', path)
    if hook is not None:
        hook.last_ckpt = path
    if is_main_process():
        from .resume import AtomicLocalBackend
        AtomicLocalBackend().put_text(path, os.path.join(runner.work_dir, 'last_checkpoint'))
    return path


@FUNCTIONS.register_module()
def preemption_safe_worker_init(worker_id: int, signals=DEFAULT_SIGNALS,
                                worker_init_fn: Optional[dict] = None) -> None:
    """A dataloader worker's init: leave the preemption signals to the main process, then run
    the config's own ``worker_init_fn`` (``dict(type=NAME, **kwargs)``), if it had one.

    torch's workers die on a SIGTERM that is not from their main process, which fails the run
    at its next batch, before the checkpoint. Here the worker blocks the preemption signals
    and a thread takes them as they come (``sigwaitinfo``): a SIGTERM from the main process
    (its shutdown of the workers, ``multiprocessing``'s terminate at exit) ends the worker,
    any other is dropped. A worker also ends when its main process asks (a sentinel on its
    queue) or is gone (torch's watchdog).
    """
    numbers = set(parse_signals(signals))
    if numbers:
        signal.pthread_sigmask(signal.SIG_BLOCK, numbers | {signal.SIGTERM})
        threading.Thread(target=_take_signals, args=(numbers | {signal.SIGTERM}, ),
                         name='preemption-signals', daemon=True).start()
    if worker_init_fn:
        worker_init_fn = dict(worker_init_fn)
        function = worker_init_fn.pop('type')
        if isinstance(function, str):
            function = FUNCTIONS.get(function)
        function(worker_id, **worker_init_fn)


def _take_signals(numbers: set) -> None:
    while True:
        info = signal.sigwaitinfo(numbers)
        if info.si_signo == signal.SIGTERM and info.si_pid == os.getppid():
            os._exit(0)


def enable_preemption(cfg: Union[Config, dict],
                      signals: Union[str, Sequence[Union[str, int]], None] = None) -> None:
    """Add :class:`PreemptionHook` to a config (in place) and make its dataloader workers
    ignore the preemption signals.

    ``signals`` overrides those of a :class:`PreemptionHook` the config lists already;
    None keeps them (or the defaults, SIGTERM and SIGUSR1); 'none' disables the hook.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    hook = next((hook for hook in hooks
                 if hook.get('type') in ('PreemptionHook', PreemptionHook)), None)
    if hook is None:
        hook = dict(type='PreemptionHook')
        hooks.append(hook)
    if signals is not None:
        hook['signals'] = list(signal.Signals(number).name for number in parse_signals(signals))
    chosen = parse_signals(hook.get('signals', DEFAULT_SIGNALS))
    if not chosen:
        hooks.remove(hook)
    cfg['custom_hooks'] = hooks
    if not chosen:
        return
    names = [number.name for number in chosen]
    for loader in LOADERS:
        loader_cfg = cfg.get(loader)
        if not loader_cfg or not loader_cfg.get('num_workers'):
            continue
        init = loader_cfg.get('worker_init_fn')
        if init is not None and init.get('type') == 'preemption_safe_worker_init':
            init['signals'] = names
        else:
            loader_cfg['worker_init_fn'] = dict(type='preemption_safe_worker_init',
                                                signals=names, worker_init_fn=init)


@HOOKS.register_module()
class PreemptionDrillHook(Hook):
    """Rehearse a preemption: send this process a real signal at a chosen iteration.

    ``custom_hooks = [dict(type='PreemptionDrillHook', iteration=100, signal='SIGUSR1')]``
    makes the process signal itself as the training of iteration ``iteration`` (counted from
    1) starts (``moment='before'``: the run stops after it) or ends (``'after'``), on every
    rank or only on ``rank``; ``times=2`` sends it twice in a row (the second exits at once).
    With a preemption run, the recorded moment (``signal_log``: a file the sending time is
    appended to, as ``time.time()``) gives the seconds from the signal to the exit.
    """

    priority = 'HIGHEST'

    def __init__(self, iteration: int, signal: str = 'SIGTERM', rank: Optional[int] = None,
                 moment: str = 'before', times: int = 1,
                 signal_log: Optional[str] = None) -> None:
        if moment not in ('before', 'after'):
            raise ValueError(f"moment must be 'before' or 'after', not {moment!r}")
        self.iteration = iteration
        self.signal = signal_number(signal)  # any, SIGKILL too
        self.rank = rank
        self.moment = moment
        self.times = times
        self.signal_log = signal_log

    def _send(self, runner) -> None:
        if runner.iter + 1 != self.iteration or self.rank not in (None, get_rank()):
            return
        if self.signal_log:
            with open(self.signal_log, 'a') as stream:
                stream.write(f'{time.time()!r}\n')
        for _ in range(self.times):
            os.kill(os.getpid(), self.signal)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.moment == 'before':
            self._send(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.moment == 'after':
            self._send(runner)
