# ImageNet-1k at 224x224 (data/imagenet, mmpretrain's ImageNet layout), as microsoft/CvT trains
# and evaluates. mmpretrain's Swin dataset settings already match the official ones step for
# step, so nothing is overridden:
#
# training (experiments/imagenet/cvt/cvt-13-224x224.yaml, timm loader):
#   RandomResizedCrop 224, scale (0.08, 1), bicubic  -> RandomResizedCrop(224, bicubic)
#   horizontal flip 0.5                              -> RandomFlip(0.5)
#   RandAugment 'rand-m9-mstd0.5-inc1'               -> RandAugment('timm_increasing',
#                                                         magnitude_level=9, magnitude_std=0.5,
#                                                         num_policies=2, total_level=10)
#   (colour jitter 0.4 is ignored by timm when RandAugment is on)
#   random erasing p=0.25, mode 'pixel'              -> RandomErasing(0.25, mode='rand', per-pixel
#                                                         noise with ImageNet mean/std)
# evaluation (lib/dataset/transformas/build.py, TEST.CENTER_CROP True, TEST.INTERPOLATION 3):
#   Resize(int(224 / 0.875) = 256) bicubic on the short side, CenterCrop(224)
#                                                    -> ResizeEdge(256, 'short', bicubic, pillow),
#                                                       CenterCrop(224); the long side is
#                                                       truncated (int) in both.
# normalisation: ImageNet mean/std on RGB           -> data_preprocessor (to_rgb=True)
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py']
