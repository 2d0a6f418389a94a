"""Restarted processes continue their run: torchrun's elastic restarts and Slurm's requeues.

torchrun (``--max-restarts``) starts a failed worker group again with the command line it was
first given, and Slurm runs a requeued job's batch script again from the top: neither tells
tools/train.py to resume. Both say that the process is a restart, in TORCHELASTIC_RESTART_COUNT
and SLURM_RESTART_COUNT; a restart resumes from the newest checkpoint in its work directory,
whatever ``--resume`` said at the first start (a ``--resume CHECKPOINT`` from another run would
otherwise take the run back to that checkpoint at every restart). A restarted worker group also
gets a process group of its own (:func:`init_process_group`).
"""
import logging
import os
from typing import Mapping, Optional

import torch.distributed as dist
from mmengine.logging import print_log
from torch.distributed.rendezvous import rendezvous

RESTART_COUNT_VARIABLES = ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT')


def restart_count(environ: Mapping[str, str] = os.environ) -> int:
    """How many times torchrun restarted this worker group, or Slurm requeued this job."""
    return max(int(environ.get(name) or 0) for name in RESTART_COUNT_VARIABLES)


def resume_after_restart(resume: Optional[str], latest: Optional[str],
                         environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """``--resume``'s value for this start: ``resume`` (None, 'auto' or a checkpoint) at the
    first start, 'auto' at a restart; ``latest`` is the newest checkpoint of the work
    directory. A restart that finds none (the run died before its first save) starts as the
    first start did.
    """
    restarts = restart_count(environ)
    if restarts == 0 or latest is None:
        return resume
    print_log(f'restart {restarts} of this run: resuming from the newest checkpoint, {latest}',
              logger='current', level=logging.WARNING)
    return 'auto'


def init_process_group(backend: str) -> None:
    """``torch.distributed.init_process_group(backend)`` from the launcher's environment, with
    the keys of a group that torchrun restarted kept apart from those of the attempts before.

    torchrun's static rendezvous (``--master-addr/--master-port``, what tools/dist_train.sh
    uses) keeps one store, the agent's, for all attempts, and the workers join it without a
    per-attempt prefix (torch 2.14's ``_create_c10d_store``). A restarted group could then read
    the addresses that the previous attempt's processes published, dead ones included: gloo's
    ``connectFullMesh`` fails with "Connection refused" or waits out its timeout (NCCL reads
    the previous unique id, pytorch/pytorch#135712). Restart n's keys are under ``restart_n/``.
    """
    restarts = int(os.environ.get('TORCHELASTIC_RESTART_COUNT') or 0)
    if restarts == 0:
        dist.init_process_group(backend=backend)
        return
    store, rank, world_size = next(rendezvous('env://'))
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f'restart_{restarts}/', store),
                            rank=rank, world_size=world_size)
