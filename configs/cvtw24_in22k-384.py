# CvT-W24 pretrained on ImageNet-22k and fine-tuned on ImageNet-1k at 384x384 (87.7% top-1 in
# the paper; CvT-w24-384x384-IN-22k.pth, which has the 1000-class head). Evaluation resizes the
# whole image to 384x384 (bicubic, no crop). Training settings: experiments/imagenet/cvt/
# cvt-w24-384x384.yaml (CvT-21's lr 1.25e-4 per 128 and weight decay 0.1, drop path 0.3); the
# 22k pretraining recipe itself is not published.
#   python tools/convert_checkpoint.py CvT-w24-384x384-IN-22k.pth checkpoints/cvtw24_in22k-384.pth
#   python tools/test.py configs/cvtw24_in22k-384.py checkpoints/cvtw24_in22k-384.pth
_base_ = [
    './_base_/models/cvtw24.py',
    './_base_/datasets/imagenet_cvt_384.py',
    './_base_/schedules/cvt21_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
