# Mask R-CNN with FPN and a CvT-13 backbone on COCO 2017 (data/coco/), 1x schedule (12 epochs).
#
# The recipe is mmdet's Swin-T Mask R-CNN (swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py), the
# closest published transformer baseline: AdamW lr 1e-4, weight decay 0.05, 1000 warmup
# iterations, steps at epochs 8 and 11, drop path 0.2 rising linearly over all blocks,
# 16 images per iteration (8 GPUs x 2).
#
#   python tools/train.py configs/cvt13_maskrcnn_coco.py
#   bash tools/dist_train.sh configs/cvt13_maskrcnn_coco.py 8
#
# See docs/dense_prediction.md for the data layout and why FPN gets three inputs.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, drop_path_rate=0.2),
    # CvT has three stages (strides 4, 8, 16) where ResNet and Swin have four (up to 32). The
    # RPN anchors (strides 4..64) and RoI extractors (4..32) of mmdet's Mask R-CNN stay as they
    # are: FPN's two extra stride-2 convs, the first on the stride-16 backbone map, supply the
    # stride-32 and stride-64 levels.
    neck=dict(in_channels=_base_.cvt_stage_widths, num_outs=5, add_extra_convs='on_input'))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    # No weight decay on the cls token nor on any norm layer: the LayerNorms and also the
    # BatchNorms of CvT's convolutional projections (named `bn`, which Swin's 'norm' key would
    # miss); norm_decay_mult selects them by type.
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'cls_token': dict(decay_mult=0.)}))

# The base schedule's steps, with Swin's longer warmup.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
