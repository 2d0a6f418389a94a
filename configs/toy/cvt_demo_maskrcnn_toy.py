# Toy Mask R-CNN: configs/cvt13_maskrcnn_coco.py with the demo CvT on the synthetic COCO
# shape set (tools/make_toy_data.py -> data/toy/coco), initialised from the toy classifier of
# configs/toy/cvt_demo_cls_toy.py. tools/quickstart.py runs pretraining and this config.
#
# Changed from the real config: data (toy root and classes), image size, model width and depth
# (the demo CvT, `demo_arch` of ./_base_/shared.py, narrower FPN and heads, a mask head with
# two convs, anchors sized for the toy objects), per-image sample counts (RPN/R-CNN samplers,
# proposals) and the schedule. Everything else (Mask R-CNN, FPN on CvT's three stages with the
# extra levels, AdamW without decay on norms and the cls token, COCO bbox+segm metrics) is
# inherited.
#
#   python tools/train.py configs/toy/cvt_demo_maskrcnn_toy.py   # from the quickstart's classifier
#   python tools/train.py configs/toy/cvt_demo_maskrcnn_toy.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=OTHER_CLASSIFIER.pth
_base_ = ['../cvt13_maskrcnn_coco.py', './_base_/shared.py']

data_root = 'data/toy/coco/'
img_scale = (160, 160)
neck_channels = 64

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **_base_.demo_arch),
        drop_path_rate=0.,
        init_cfg=dict(checkpoint=_base_.toy_pretrained)),
    neck=dict(in_channels=_base_.demo_arch.embed_dims, out_channels=neck_channels),
    rpn_head=dict(
        in_channels=neck_channels, feat_channels=neck_channels,
        # Toy objects are 15-45% of the image side: anchors of 16..256 px at strides 4..64.
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        # RoIAlign with a fixed 2x2 samples per bin: the adaptive default dominates the CPU
        # time of a step (most of it in RoIAlign's backward).
        bbox_roi_extractor=dict(out_channels=neck_channels, roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(in_channels=neck_channels, fc_out_channels=256,
                       num_classes=len(_base_.toy_classes)),
        mask_roi_extractor=dict(out_channels=neck_channels, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(in_channels=neck_channels, conv_out_channels=neck_channels, num_convs=2,
                       num_classes=len(_base_.toy_classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64, pos_fraction=0.5))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(max_per_img=20)))

metainfo = dict(classes=_base_.toy_classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=8)))
val_dataloader = dict(
    batch_size=8, num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# Schedule: a high AdamW lr after a short warmup, a step near the end; evaluate once at the
# end.
max_epochs = 8
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 1], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=10)
