# CvT-21 on ImageNet-1k at 224x224 (82.5% top-1 in the paper), with microsoft/CvT's recipe
# (experiments/imagenet/cvt/cvt-21-224x224.yaml): as CvT-13's, but lr 1.25e-4 per 128 images
# and weight decay 0.1.
#
# Two settings of that yaml file are not taken over, since the paper states one recipe for all
# models: it disables the timm loader (AUG.TIMM_AUG.USE_LOADER false), which as the code stands
# drops RandAugment and random erasing, and it samples with repeated augmentation
# (DATASET.SAMPLER repeated_aug). For the latter add
#   --cfg-options train_dataloader.sampler.type=RepeatAugSampler
#
#   python tools/convert_checkpoint.py CvT-21-224x224-IN-1k.pth checkpoints/cvt21_in1k.pth
#   python tools/test.py configs/cvt21_in1k.py checkpoints/cvt21_in1k.pth
_base_ = [
    './_base_/models/cvt21.py',
    './_base_/datasets/imagenet_cvt_224.py',
    './_base_/schedules/cvt21_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
