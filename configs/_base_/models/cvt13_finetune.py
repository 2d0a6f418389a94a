# CvT-13 for fine-tuning on a downstream classification set (configs/transfer/).
#
# Only the backbone comes from the ImageNet checkpoint: `init_cfg` with prefix 'backbone.' loads
# the `backbone.*` tensors, and the head, whose size depends on the target set, starts fresh.
# (`load_from` would try to load the ImageNet head too.) The checkpoint is what
# tools/convert_checkpoint.py writes; point elsewhere with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
#
# Fine-tuning follows ViT's protocol, which the CvT paper adopts: plain cross-entropy, no
# Mixup/CutMix (so `train_cfg=None` drops the pretraining batch augments).
_base_ = ['./cvt13.py']
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cvt13_in1k.pth',
                                prefix='backbone.')),
    head=dict(loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0),
              cal_acc=True),
    train_cfg=None,
)
