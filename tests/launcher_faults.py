"""Faults for the launcher tests, put into real training processes at a known iteration.

A toy config imports this module (``custom_imports``, tests/ on PYTHONPATH) and names one of
the hooks in ``custom_hooks``. Each acts at iteration ``iteration`` (counted over the run) of
the rank ``rank``, and only at the first start of the run: torchrun's restarts and Slurm's
requeues (cvt_mm.engine.elastic.restart_count) train on undisturbed. The hook writes ``marker``
(the process id) for the test, which then delivers the fault from outside.
"""
import os
import signal
import threading
import time

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from cvt_mm.engine.elastic import restart_count


def write_marker(path: str) -> None:
    """The process id, written whole (a rename) so that the test never reads half of it."""
    partial = f'{path}.partial'
    with open(partial, 'w') as marker:
        marker.write(str(os.getpid()))
    os.replace(partial, path)


class FaultHook(Hook):

    def __init__(self, iteration: int, marker: str, rank: int = 0):
        self.iteration = iteration
        self.marker = marker
        self.rank = rank

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter == self.iteration and get_rank() == self.rank and restart_count() == 0:
            self.fault()

    def fault(self) -> None:
        raise NotImplementedError


@HOOKS.register_module()
class StallForKillHook(FaultHook):
    """Writes the marker and waits there until the process is killed."""

    def fault(self) -> None:
        write_marker(self.marker)
        threading.Event().wait()


@HOOKS.register_module()
class WaitForSignalHook(FaultHook):
    """Writes the marker, waits until ``signal_name`` arrives, then hands it to the run's own
    handler: the run learns of the signal before iteration ``iteration``, whenever it was sent."""

    def __init__(self, iteration: int, marker: str, rank: int = 0, signal_name: str = 'SIGUSR1'):
        super().__init__(iteration, marker, rank)
        self.signum = signal.Signals[signal_name]

    def fault(self) -> None:
        arrived = threading.Event()
        run_handler = signal.signal(self.signum, lambda signum, frame: arrived.set())
        write_marker(self.marker)
        while not arrived.is_set():
            time.sleep(0.1)  # the handler runs in this thread, between sleeps
        signal.signal(self.signum, run_handler)
        os.kill(os.getpid(), self.signum)


def die_in_early_attempts(attempts_to_kill: int) -> None:
    """A torchrun worker that joins the process group (cvt_mm's way) and all-reduces; rank 0
    SIGKILLs itself in the first ``attempts_to_kill`` attempts, so that torchrun restarts the
    group, and joins a restarted group 3 s after the others, which have then looked up its
    address. Prints the sum once it survives."""
    import torch
    import torch.distributed as dist

    from cvt_mm.engine.elastic import init_process_group
    if restart_count() > 0 and os.environ['RANK'] == '0':
        time.sleep(3)
    init_process_group('gloo')
    total = torch.ones(1)
    dist.all_reduce(total)
    if restart_count() < attempts_to_kill and dist.get_rank() == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()
    print(f'attempt {restart_count()}: rank {dist.get_rank()} summed {total.item()}', flush=True)
    dist.destroy_process_group()


if __name__ == '__main__':
    import sys
    die_in_early_attempts(int(sys.argv[1]))
