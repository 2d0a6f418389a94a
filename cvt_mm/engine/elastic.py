"""Restarted processes continue their run: torchrun's elastic restarts and Slurm's requeues.

torchrun (``--max-restarts``) starts a failed worker group again with the command line it was
first given, and Slurm runs a requeued job's batch script again from the top: neither tells
tools/train.py to resume. Both say that the process is a restart, in TORCHELASTIC_RESTART_COUNT
and SLURM_RESTART_COUNT; a restart resumes from the newest checkpoint in its work directory,
whatever ``--resume`` said at the first start (a ``--resume CHECKPOINT`` from another run would
otherwise take the run back to that checkpoint at every restart).
"""
import logging
import os
from typing import Mapping, Optional

from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

RESTART_COUNT_VARIABLES = ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT')


def restart_count(environ: Mapping[str, str] = os.environ) -> int:
    """How many times torchrun restarted this worker group, or Slurm requeued this job."""
    return max(int(environ.get(name) or 0) for name in RESTART_COUNT_VARIABLES)


def resume_after_restart(resume: Optional[str], work_dir: str,
                         environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """``--resume``'s value for this start: ``resume`` (None, 'auto' or a checkpoint) at the
    first start, 'auto' (the newest checkpoint in ``work_dir``) at a restart.

    A restart that finds no checkpoint in ``work_dir`` (the run died before its first save)
    starts as the first start did.
    """
    restarts = restart_count(environ)
    if restarts == 0 or find_latest_checkpoint(work_dir) is None:
        return resume
    print_log(f'restart {restarts} of this run: resuming from the newest checkpoint in '
              f'{work_dir}', logger='current', level=logging.WARNING)
    return 'auto'
