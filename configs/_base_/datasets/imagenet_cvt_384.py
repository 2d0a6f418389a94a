# ImageNet-1k at 384x384 (experiments/imagenet/cvt/cvt-{13,21,w24}-384x384.yaml): the 224
# settings with 384 crops for training, and for evaluation a plain bicubic resize of the whole
# image to 384x384 without cropping (TEST.CENTER_CROP False in those files).
_base_ = ['./imagenet_cvt_224.py']

train_pipeline = [
    dict(step, scale=384) if step['type'] == 'RandomResizedCrop' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(384, 384), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
