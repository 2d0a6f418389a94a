# Toy pretraining: a classifier of the demo CvT on the synthetic ImageNet-style shape set
# (tools/make_toy_data.py -> data/toy/imagenet), a few CPU minutes. Its checkpoint initialises
# the backbone of configs/toy/cvt_demo_maskrcnn_toy.py; tools/quickstart.py runs both.
#
# Everything but data, schedule, image size and model size (the demo CvT `demo_arch` and the
# classes: ./_base_/shared.py) comes from configs/cvt13_in1k.py:
# the same ImageClassifier / CvT (cls token -> final LayerNorm -> linear head), AdamW without
# decay on norms, biases and the cls token, label smoothing, linear warmup then cosine.
#
#   python tools/train.py configs/toy/cvt_demo_cls_toy.py
_base_ = ['../cvt13_in1k.py', './_base_/shared.py']

data_root = 'data/toy/imagenet'
img_size = 64

model = dict(
    backbone=dict(arch=dict(_delete_=True, **_base_.demo_arch), drop_path_rate=0.),
    head=dict(num_classes=len(_base_.toy_classes),
              in_channels=_base_.demo_arch.embed_dims[-1]),
    # No Mixup/CutMix: this schedule is too short to profit from them.
    train_cfg=dict(_delete_=True))
data_preprocessor = dict(num_classes=len(_base_.toy_classes))

# Small images, light augmentation (the toy images are 64-96 px, one shape each).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.7, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
dataset = dict(_delete_=True, type='CustomDataset', data_root=data_root,
               metainfo=dict(classes=_base_.toy_classes))
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(**dataset, data_prefix='train', ann_file='meta/train.txt',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True,
    dataset=dict(**dataset, data_prefix='val', ann_file='meta/val.txt',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# Schedule: warmup, then cosine over 16 epochs. The length is what the detector trained from
# this classifier depends on most, and the lr is tuned for this batch size, so it is not
# scaled automatically.
max_epochs = 16
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
