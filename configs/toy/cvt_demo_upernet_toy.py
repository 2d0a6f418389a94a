# Toy UperNet: configs/cvt13_upernet_ade20k.py with the demo CvT on the synthetic
# ADE20K-layout shape set (tools/make_toy_data.py -> data/toy/ade): background + 5 shape
# classes, 4-8 shapes a scene, each class filled with its own pattern.
#
# Changed from the real config: data (toy root, classes, image size, a plain resize + flip
# pipeline), model width and depth (the demo CvT, `demo_arch` of ./_base_/shared.py,
# narrower UperNet and auxiliary heads) and the schedule. Like the real config, the backbone
# starts from a classifier: the toy one that tools/quickstart.py (`make demo`) pretrains.
# Results: docs/quickstart.md.
#
#   make demo     # leaves work_dirs/quickstart/pretrain/cvt_demo_cls_toy.pth
#   python tools/make_toy_data.py --tasks ade --num-train 600 --num-val 60 --image-size 160
#   python tools/train.py configs/toy/cvt_demo_upernet_toy.py
#   python tools/train.py configs/toy/cvt_demo_upernet_toy.py \
#       --cfg-options model.backbone.init_cfg=None          # from scratch instead
_base_ = ['../cvt13_upernet_ade20k.py', './_base_/shared.py']

data_root = 'data/toy/ade/ADEChallengeData2016'
img_scale = (160, 160)
crop_size = img_scale
head_channels = 64

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch=dict(_delete_=True, **_base_.demo_arch),
        drop_path_rate=0.,
        init_cfg=dict(checkpoint=_base_.toy_pretrained)),
    decode_head=dict(in_channels=_base_.demo_arch.embed_dims, channels=head_channels,
                     num_classes=len(_base_.toy_ade_classes)),
    auxiliary_head=dict(in_channels=_base_.demo_arch.embed_dims[2], channels=head_channels,
                        num_classes=len(_base_.toy_ade_classes)))

# ADE20KDataset only accepts ADE's 150 class names; the toy classes go through its base class
# with the same file layout and label convention (reduce_zero_label).
dataset = dict(type='BaseSegDataset', data_root=data_root, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True,
               metainfo=dict(classes=_base_.toy_ade_classes))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=1,
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=4, num_workers=1,
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

# Schedule: AdamW at a high lr, short warmup, linear decay over 3,000 iterations: the shape
# classes separate late, as the lr decays.
max_iters = 3000
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=1000)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
