"""Sharding CvT's parameters with FSDP (mmengine's FlexibleRunner and FSDPStrategy).

:class:`ResumableFSDPStrategy` is mmengine's ``FSDPStrategy`` with a resume that works on
current torch (the config's strategy).

:func:`cvt_block_wrap_policy` makes each CvT block its own FSDP unit, so that only one
block's full parameters exist at a time during the forward and backward passes; CvT-W24's
20 last-stage blocks hold 12.6M parameters each. It is registered in mmengine's FUNCTIONS
registry, where ``MMFullyShardedDataParallel`` looks ``auto_wrap_policy`` up by name:

    strategy = dict(type='FSDPStrategy',
                    model_wrapper=dict(auto_wrap_policy=dict(type='cvt_block_wrap_policy')))
"""
import functools

import torch.nn as nn
from mmengine._strategy import FSDPStrategy
from mmengine.registry import FUNCTIONS, STRATEGIES
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy


@FUNCTIONS.register_module()
def cvt_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP's auto-wrap policy: one FSDP unit per ``CvTBlock`` (and the root for the rest)."""
    from cvt_mm.models.backbones.cvt import CvTBlock
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={CvTBlock})
    return policy(module=module, recurse=recurse, nonwrapped_numel=nonwrapped_numel)


@STRATEGIES.register_module()
class ResumableFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy``, passing the optimizer state to torch by keyword on resume.

    mmengine 0.10 calls ``FullyShardedDataParallel.optim_state_dict_to_load(state_dict, model,
    optimizer)``, the argument order of torch 1.x; torch 2 takes ``(model, optim,
    optim_state_dict)``, so every resume failed with "TypeError: unhashable type: 'dict'".
    """

    def load_optim_state_dict(self, state_dict: dict) -> None:
        optim_state_dict = FullyShardedDataParallel.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(optim_state_dict)
