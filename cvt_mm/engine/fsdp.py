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
import dataclasses
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
    """mmengine's ``FSDPStrategy`` with a resume that continues the run exactly.

    - mmengine 0.10 calls ``FullyShardedDataParallel.optim_state_dict_to_load(state_dict,
      model, optimizer)``, the argument order of torch 1.x; torch 2 takes ``(model, optim,
      optim_state_dict)``, so every resume failed with "TypeError: unhashable type: 'dict'".
    - On the CPU the full optimizer state is gathered without ``offload_to_cpu`` (see
      :meth:`optim_state_dict`).
    """

    def optim_state_dict(self) -> dict:
        """The optimizer state for the checkpoint.

        FSDP gathers each state of a flat parameter (AdamW's ``exp_avg``, then ``exp_avg_sq``)
        into one reused buffer and offloads views of it with ``.cpu()``, a no-op on a CPU
        tensor: under mmengine's ``offload_to_cpu=True`` every state but the last came back
        overwritten by the last, and a resumed run continued with ``exp_avg_sq`` as its first
        moment. Without the offload FSDP copies each state out of the buffer.
        """
        config = self.optim_state_dict_config
        on_cpu = next(self.model.parameters()).device.type == 'cpu'
        if not (on_cpu and getattr(config, 'offload_to_cpu', False)):
            return super().optim_state_dict()
        with FullyShardedDataParallel.state_dict_type(
                self.model, self.state_dict_type, self.state_dict_config,
                dataclasses.replace(config, offload_to_cpu=False)):
            return FullyShardedDataParallel.optim_state_dict(self.model, self.optim_wrapper)

    def load_optim_state_dict(self, state_dict: dict) -> None:
        optim_state_dict = FullyShardedDataParallel.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(optim_state_dict)
