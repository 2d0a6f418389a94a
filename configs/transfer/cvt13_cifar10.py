# Fine-tune CvT-13 on CIFAR-10 (data/cifar10, mmpretrain's CIFAR10: the python pickles of
# cifar-10-batches-py/, downloaded there if absent), as in the CvT paper's transfer experiments:
# 384x384 inputs, SGD, 10,000 steps of 512 images. The backbone starts from the converted
# ImageNet checkpoint (checkpoints/cvt13_in1k.pth by default; see docs/checkpoints.md):
#   python tools/train.py configs/transfer/cvt13_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/cvt13_in22k-384.pth
_base_ = [
    '../_base_/models/cvt13_finetune.py',
    '../_base_/datasets/finetune_384.py',
    '../_base_/schedules/finetune_sgd_10k.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(head=dict(num_classes=10))
data_preprocessor = dict(num_classes=10, to_rgb=False)  # CIFAR arrays are RGB already

train_dataloader = dict(dataset=dict(type='CIFAR10', data_root='data/cifar10', split='train',
                                     pipeline=_base_.train_transforms))
val_dataloader = dict(dataset=dict(type='CIFAR10', data_root='data/cifar10', split='test',
                                   pipeline=_base_.test_transforms))
test_dataloader = val_dataloader
