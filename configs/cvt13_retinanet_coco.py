# RetinaNet with FPN and a CvT-13 backbone on COCO 2017 (data/coco/, boxes only), 1x schedule.
#
# mmdet's RetinaNet (mmdet::retinanet/retinanet_r50_fpn_1x_coco.py) with the backbone and the
# optimizer of cvt13_maskrcnn_coco.py (AdamW lr 1e-4, weight decay 0.05 without decay on norms
# and the cls token, drop path 0.2, 1000 warmup iterations): mmdet's Swin and PVT RetinaNets
# swap SGD for AdamW in the same way.
#
# RetinaNet's anchors are at strides 8..128 (P3..P7). CvT's stage 1 and 2 maps (strides 8, 16)
# are P3 and P4; FPN's three extra stride-2 convs, the first on the stride-16 backbone map
# ('on_input', as RetinaNet's FPN starts P6 on C5), give strides 32, 64 and 128. The stride-4
# stage is not output (out_indices (1, 2)): FPN would skip it, and an output norm without
# gradients would stop DDP (find_unused_parameters is off).
#
#   python tools/train.py configs/cvt13_retinanet_coco.py
#   bash tools/dist_train.sh configs/cvt13_retinanet_coco.py 8
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, out_indices=(1, 2),
                  drop_path_rate=0.2),
    neck=dict(in_channels=_base_.cvt_stage_widths[1:], start_level=0,
              add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    # As in cvt13_maskrcnn_coco.py: no weight decay on the cls token nor on any norm layer.
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'cls_token': dict(decay_mult=0.)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
