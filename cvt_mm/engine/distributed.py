"""Distributed training without CUDA: mmengine's launcher and DDP wrapper on CPU with gloo.

mmengine's pytorch launcher calls ``torch.cuda.set_device`` and its default DDP wrapper passes
``device_ids=[LOCAL_RANK]``, both of which fail on a machine without a GPU. There the process
group is started here (the Runner, finding one, skips its own launcher) and the model is
wrapped with ``device_ids=None``.
"""
import logging

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log


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


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``launcher='pytorch'`` on a machine without CUDA; returns whether it did.

    Starts a gloo process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT), makes the DDP wrapper CPU-capable (``device_ids=None``) and replaces SyncBN,
    which torch cannot run on CPU tensors, with per-process BN.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
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
