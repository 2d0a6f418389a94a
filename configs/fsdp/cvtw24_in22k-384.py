# CvT-W24 at 384x384 (configs/cvtw24_in22k-384.py) with its parameters, gradients and optimizer
# states sharded over the GPUs by FSDP: 277M parameters are 1.1 GB in float32, 4.4 GB with
# AdamW's two moments and the gradients, on every GPU under DDP. mmengine's FlexibleRunner runs
# mmengine's FSDPStrategy (as cvt_mm.engine.ResumableFSDPStrategy, whose resume works on torch 2);
# each CvT block is one FSDP unit (cvt_mm.engine.fsdp.cvt_block_wrap_policy),
# and checkpoints are gathered into one full state dict on rank 0, which loads anywhere.
#
#   bash tools/dist_train.sh configs/fsdp/cvtw24_in22k-384.py 8
#   GPUS=16 bash tools/slurm_train.sh PARTITION cvtw24 configs/fsdp/cvtw24_in22k-384.py
#
# docs/long_runs.md says what of it has run without GPUs.
_base_ = ['../cvtw24_in22k-384.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    type='ResumableFSDPStrategy',
    model_wrapper=dict(auto_wrap_policy=dict(type='cvt_block_wrap_policy')),
    state_dict_cfg='full')
