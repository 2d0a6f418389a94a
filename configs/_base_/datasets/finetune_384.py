# Data settings shared by the transfer benchmarks (configs/transfer/), at the CvT paper's
# fine-tuning resolution of 384x384 (ViT's protocol, which the paper adopts).
#
# Each config adds its dataset and starts its pipelines with the transforms below; file-based
# sets put LoadImageFromFile first, CIFAR does not (its images are decoded arrays).
#
# training: the official fine-tuning transform (lib/dataset/transformas/build.py, FINETUNE
#   branch): resize to (crop + 32)^2 with AUG.INTERPOLATION (bilinear), random 384 crop,
#   horizontal flip; no RandAugment, erasing or Mixup.
# evaluation: a plain bicubic resize to 384x384, as for the 384 ImageNet models.
# normalisation: ImageNet mean/std whatever the target set, since the backbone was trained so.
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,  # LoadImageFromFile gives BGR; the CIFAR configs set False (arrays are RGB)
)

train_transforms = [
    dict(type='Resize', scale=(416, 416), backend='pillow', interpolation='bilinear'),
    dict(type='RandomCrop', crop_size=384),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_transforms = [
    dict(type='Resize', scale=(384, 384), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]

# 8 GPUs x 64 = 512 images per iteration, the paper's fine-tuning batch (auto_scale_lr in the
# schedule adapts the learning rate to other sizes).
train_dataloader = dict(
    batch_size=64,
    num_workers=5,
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=5,
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
