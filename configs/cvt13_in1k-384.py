# CvT-13 on ImageNet-1k at 384x384 (83.0% top-1 in the paper; CvT-13-384x384-IN-1k.pth).
# Evaluation resizes the whole image to 384x384 (bicubic, no crop); training follows
# experiments/imagenet/cvt/cvt-13-384x384.yaml (the 224 recipe with 384 crops).
#   python tools/convert_checkpoint.py CvT-13-384x384-IN-1k.pth checkpoints/cvt13_in1k-384.pth
#   python tools/test.py configs/cvt13_in1k-384.py checkpoints/cvt13_in1k-384.pth
_base_ = [
    './_base_/models/cvt13.py',
    './_base_/datasets/imagenet_cvt_384.py',
    './_base_/schedules/cvt13_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
