# Toy pretraining: a tiny CvT classifier on the synthetic ImageNet-style shape set
# (tools/make_toy_data.py -> data/toy/imagenet), a few CPU minutes. Its checkpoint initialises
# the backbone of configs/toy/cvt_tiny_maskrcnn_toy.py; tools/quickstart.py runs both.
#
# Everything but data, schedule, image size and model size comes from configs/cvt13_in1k.py:
# the same ImageClassifier / CvT (cls token -> final LayerNorm -> linear head), AdamW without
# decay on norms, biases and the cls token, label smoothing, linear warmup then cosine.
#
#   python tools/train.py configs/toy/cvt_tiny_cls_toy.py
_base_ = ['../cvt13_in1k.py']

data_root = 'data/toy/imagenet'
classes = ('circle', 'ellipse', 'square', 'star', 'triangle')  # make_toy_data.SHAPE_CLASSES
img_size = 64
# A tiny CvT through the same code path as CvT-13: three stages (strides 4, 8, 16), dw_bn
# projections, cls token in the last stage.
tiny_arch = dict(embed_dims=[48, 96, 192], depths=[1, 2, 2], num_heads=[1, 2, 4])

model = dict(
    backbone=dict(arch=dict(_delete_=True, **tiny_arch), drop_path_rate=0.),
    head=dict(num_classes=len(classes), in_channels=tiny_arch['embed_dims'][-1]),
    # No Mixup/CutMix: a few hundred iterations are too few to profit from them.
    train_cfg=dict(_delete_=True))
data_preprocessor = dict(num_classes=len(classes))

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
               metainfo=dict(classes=classes))
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

# Schedule: warmup, then cosine over 16 epochs (2,500 iterations, ~6.5 min on 2 cores). The
# length matters more than anything else tried (docs/quickstart.md): 7 epochs reach 47% top-1
# and a detector AP50 of 0.46 from it, 16 epochs 75% and 0.54. Higher lrs (1e-3, 2e-3) were
# worse, lower ones (2.5e-4, 1.25e-4) slower. The lr is meant for this batch size, so no
# automatic scaling.
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
