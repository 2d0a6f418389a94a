"""Sharding CvT's parameters with FSDP (mmengine's FlexibleRunner and FSDPStrategy).

:func:`cvt_block_wrap_policy` makes each CvT block its own FSDP unit, so that only one
block's full parameters exist at a time during the forward and backward passes; CvT-W24's
20 last-stage blocks hold 12.6M parameters each. It is registered in mmengine's FUNCTIONS
registry, where ``MMFullyShardedDataParallel`` looks ``auto_wrap_policy`` up by name:

    strategy = dict(type='FSDPStrategy',
                    model_wrapper=dict(auto_wrap_policy=dict(type='cvt_block_wrap_policy')))
"""
import functools

import torch.nn as nn
from mmengine.registry import FUNCTIONS
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy


@FUNCTIONS.register_module()
def cvt_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP's auto-wrap policy: one FSDP unit per ``CvTBlock`` (and the root for the rest)."""
    from cvt_mm.models.backbones.cvt import CvTBlock
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={CvTBlock})
    return policy(module=module, recurse=recurse, nonwrapped_numel=nonwrapped_numel)
