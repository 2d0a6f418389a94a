"""How tools/train.py and tools/test.py end a distributed run: shutdown_distributed frees the gloo
group while the interpreter is whole, and end_worker_process ends a worker whose group outlives
it (as FSDP's units keep it) without the interpreter's finalization, after the exit handlers.
Two real gloo processes under torchrun."""
import subprocess
import sys

WORKER = '''
import atexit
import glob
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cvt_mm.engine import end_worker_process, shutdown_distributed


def gloo_worker_threads():
    names = [open(path).read() for path in glob.glob('/proc/self/task/*/comm')]
    return sum(name.startswith('pt_gloo') for name in names)


class CycleOwner:
    """Holds a DDP model in a reference cycle, as the Runner and its hooks do."""

    def __init__(self):
        self.model = DistributedDataParallel(torch.nn.Linear(4, 2))
        self.owner = self


mode, out_dir = sys.argv[1:]
dist.init_process_group('gloo')
rank = dist.get_rank()
CycleOwner().model(torch.randn(3, 4)).sum().backward()
threads_before = gloo_worker_threads()


def record_threads():
    with open(f'{out_dir}/threads_{rank}', 'w') as f:
        f.write(f'{threads_before} {gloo_worker_threads()}')


if mode == 'cycle':
    assert shutdown_distributed()
    record_threads()
    assert not shutdown_distributed()
else:
    group_kept_alive = dist.group.WORLD  # past shutdown, as FSDP's units keep it
    atexit.register(lambda: open(f'{out_dir}/exit_handler_ran_{rank}', 'w').close())
    assert shutdown_distributed()
    record_threads()
    print(f'rank {rank} printed last')  # buffered, stdout being a pipe
    end_worker_process()
    raise AssertionError('end_worker_process returned')
'''


def run_two_workers(tmp_path, mode):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    return subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
         str(script), mode, str(tmp_path)],
        capture_output=True, text=True, timeout=300)


def gloo_threads_before_and_after_shutdown(tmp_path, rank):
    before, after = (tmp_path / f'threads_{rank}').read_text().split()
    return int(before), int(after)


def test_shutdown_frees_the_gloo_group_held_in_a_reference_cycle(tmp_path):
    result = run_two_workers(tmp_path, 'cycle')
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        before, after = gloo_threads_before_and_after_shutdown(tmp_path, rank)
        assert before > 0 and after == 0


def test_worker_whose_group_outlives_shutdown_ends_with_status_0_after_exit_handlers(tmp_path):
    result = run_two_workers(tmp_path, 'kept-alive')
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        # The group's threads were still there: the case finalization could abort in.
        assert gloo_threads_before_and_after_shutdown(tmp_path, rank)[1] > 0
        assert (tmp_path / f'exit_handler_ran_{rank}').exists()
        assert f'rank {rank} printed last' in result.stdout
    assert 'end_worker_process returned' not in result.stderr
