# CvT-13 on ImageNet-1k at 224x224 (81.6% top-1 in the paper), with microsoft/CvT's training
# recipe (experiments/imagenet/cvt/cvt-13-224x224.yaml): 300 epochs of AdamW, lr 2.5e-4 per 256
# images, weight decay 0.05, 5 warmup epochs then cosine; Mixup 0.8 / CutMix 1.0, RandAugment
# rand-m9-mstd0.5-inc1, random erasing 0.25, label smoothing 0.1. Evaluation: bicubic resize of
# the short side to 256, centre crop 224.
#
# Evaluate the official weights (CvT-13-224x224-IN-1k.pth, converted; see docs/checkpoints.md):
#   python tools/convert_checkpoint.py CvT-13-224x224-IN-1k.pth checkpoints/cvt13_in1k.pth
#   python tools/test.py configs/cvt13_in1k.py checkpoints/cvt13_in1k.pth
_base_ = [
    './_base_/models/cvt13.py',
    './_base_/datasets/imagenet_cvt_224.py',
    './_base_/schedules/cvt13_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
