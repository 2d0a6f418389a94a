# CvT-21 on ImageNet-1k at 384x384 (83.3% top-1 in the paper; CvT-21-384x384-IN-1k.pth).
# Evaluation resizes the whole image to 384x384 (bicubic, no crop); training follows
# experiments/imagenet/cvt/cvt-21-384x384.yaml.
#   python tools/convert_checkpoint.py CvT-21-384x384-IN-1k.pth checkpoints/cvt21_in1k-384.pth
#   python tools/test.py configs/cvt21_in1k-384.py checkpoints/cvt21_in1k-384.pth
_base_ = [
    './_base_/models/cvt21.py',
    './_base_/datasets/imagenet_cvt_384.py',
    './_base_/schedules/cvt21_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
