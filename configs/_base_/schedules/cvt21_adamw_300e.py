# microsoft/CvT's ImageNet-1k schedule for CvT-21 and CvT-W24 (experiments/imagenet/cvt/
# cvt-21-224x224.yaml, cvt-21-384x384.yaml, cvt-w24-384x384.yaml): CvT-13's schedule with
# lr 1.25e-4 per 128 images (BATCH_SIZE_PER_GPU 128) and weight decay 0.1. That is the same
# learning rate per image as CvT-13's, so the warmup's start factor carries over unchanged.
_base_ = ['./cvt13_adamw_300e.py']

optim_wrapper = dict(optimizer=dict(lr=1.25e-4, weight_decay=0.1))
auto_scale_lr = dict(base_batch_size=128)
