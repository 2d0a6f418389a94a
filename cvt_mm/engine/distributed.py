"""Distributed training without CUDA: mmengine's launchers and DDP wrapper on CPU with gloo.

mmengine's pytorch and slurm launchers call ``torch.cuda.set_device`` and its default DDP
wrapper passes ``device_ids=[LOCAL_RANK]``, all of which fail on a machine without a GPU. There
the process group is started here (the Runner, finding one, skips its own launcher) and the
model is wrapped with ``device_ids=None``. With GPUs, mmengine's own launchers run unchanged.
"""
import atexit
import gc
import logging
import os
import subprocess
import sys
from typing import NoReturn

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from .elastic import init_process_group


def replace_sync_bn(node) -> int:
    """Turn every ``type='SyncBN'`` in a config tree into ``'BN'`` (in place); returns the count.

    torch's SyncBatchNorm only synchronises CUDA-like tensors and raises on CPU ones.
    """
    replaced = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            replaced += 1
        for value in node.values():
            replaced += replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replaced += replace_sync_bn(value)
    return replaced


def slurm_environment(environ=os.environ) -> dict:
    """torch.distributed's environment variables from those srun gives each task.

    RANK, WORLD_SIZE and LOCAL_RANK from SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID; the
    master is the first host of SLURM_NODELIST (``scontrol show hostnames`` expands ranges
    such as ``node[01-04]``) unless MASTER_ADDR is set; MASTER_PORT defaults to torch's 29500.
    As mmengine's slurm launcher computes them, without its ``torch.cuda.set_device``.
    """
    missing = [name for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
               if name not in environ]
    if missing:
        raise RuntimeError(f'--launcher slurm outside a Slurm job step: {", ".join(missing)} '
                           'not set (start it with srun, see tools/slurm_train.sh)')
    master = environ.get('MASTER_ADDR')
    if master is None:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', environ['SLURM_NODELIST']],
                               capture_output=True, text=True, check=True).stdout.split()
        master = hosts[0]
    return dict(RANK=environ['SLURM_PROCID'], WORLD_SIZE=environ['SLURM_NTASKS'],
                LOCAL_RANK=environ.get('SLURM_LOCALID', '0'), MASTER_ADDR=master,
                MASTER_PORT=environ.get('MASTER_PORT', str(job_port(environ))))


def job_port(environ=os.environ) -> int:
    """A port in 20000-39999 that every task of one Slurm job computes alike."""
    job_id = environ.get('SLURM_JOB_ID')
    return 29500 if job_id is None else 20000 + int(job_id) % 20000


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``launcher='pytorch'`` or ``'slurm'`` on a machine without CUDA; returns
    whether it did.

    Starts a gloo process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT) or from srun's (:func:`slurm_environment`), makes the DDP wrapper CPU-capable
    (``device_ids=None``) and replaces SyncBN, which torch cannot run on CPU tensors, with
    per-process BN.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in ('pytorch', 'slurm') or torch.cuda.is_available():
        return False
    if launcher == 'slurm':
        os.environ.update(slurm_environment())
    if not dist.is_initialized():
        init_process_group('gloo')
    strategy = cfg.get('strategy')
    if strategy is not None:  # FlexibleRunner: the strategy wraps the model
        wrapper = strategy.setdefault('model_wrapper', ConfigDict())
        if strategy.get('type') in ('FSDPStrategy', 'ResumableFSDPStrategy'):
            wrapper['device_id'] = torch.device('cpu')  # the default is LOCAL_RANK, a GPU
        else:
            wrapper['device_ids'] = None
    wrapper_cfg = cfg.get('model_wrapper_cfg') or ConfigDict(
        type='MMDistributedDataParallel',
        # mmengine's defaults for its own wrapper.
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg['device_ids'] = None  # CPU modules take no device ids
    cfg.model_wrapper_cfg = wrapper_cfg
    replaced = replace_sync_bn(cfg.model)
    if replaced:
        print_log(f'CPU distributed training: {replaced} SyncBN layer config(s) replaced by BN',
                  logger='current', level=logging.WARNING)
    return True


def shutdown_distributed() -> bool:
    """Leave the process group, if there is one; returns whether there was.

    A barrier first, so that no process leaves while others still talk to the group. Then a
    garbage collection: the Runner (in reference cycles with its hooks) holds DDP's model, which
    holds the group, and only once they are gone does ``destroy_process_group`` free gloo's
    worker threads while the interpreter is still whole.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()
    return True


def end_worker_process(status: int = 0) -> NoReturn:
    """End a distributed worker that has left its group (:func:`shutdown_distributed`): the
    interpreter's exit handlers run (logging's flush among them), then ``os._exit(status)``.

    FSDP's units stay referenced from outside Python after the Runner is gone, and with them the
    gloo group and its threads; their teardown during interpreter finalization can abort the
    process ("terminate called without an active exception", SIGABRT), which fails a run that
    has finished and saved everything. Skipping finalization skips that teardown.
    """
    atexit._run_exitfuncs()  # what a normal exit runs before finalization
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
