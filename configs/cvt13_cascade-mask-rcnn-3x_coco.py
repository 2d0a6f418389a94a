# Cascade Mask R-CNN with FPN and a CvT-13 backbone on COCO 2017 (data/coco/), 3x schedule
# (36 epochs) with multi-scale and crop augmentation.
#
# Everything but the detector comes from cvt13_maskrcnn-3x_coco.py: the CvT-13 backbone and
# FPN (three stages, strides 4..64, docs/dense_prediction.md), AdamW lr 1e-4 / weight decay
# 0.05 without decay on norms and the cls token, DETR's multi-scale + crop augmentation and the
# 3x steps. The detector is mmdet's Cascade Mask R-CNN
# (mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py) with the box heads that mmdet's
# ConvNeXt cascade 3x configs and the Swin paper's Cascade Mask R-CNN use: four shared convs and
# one fc (4conv1fc) with SyncBN, class-specific regression of decoded boxes with GIoU loss, three
# stages at IoU 0.5 / 0.6 / 0.7.
#
#   python tools/train.py configs/cvt13_cascade-mask-rcnn-3x_coco.py
#   bash tools/dist_train.sh configs/cvt13_cascade-mask-rcnn-3x_coco.py 8
_base_ = ['./cvt13_maskrcnn-3x_coco.py']

# Each cascade stage regresses finer offsets from better proposals: smaller target stds.
cascade_target_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                       [0.033, 0.033, 0.067, 0.067]]
cascade_iou_thrs = [0.5, 0.6, 0.7]

model = dict(
    type='CascadeRCNN',
    # mmdet's cascade base: smooth-L1 RPN loss, 2000 proposals per image.
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0,
                                 loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[
            dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256,
                 conv_out_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=stds),
                 reg_class_agnostic=False, reg_decoded_bbox=True,
                 norm_cfg=dict(type='SyncBN', requires_grad=True),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for stds in cascade_target_stds
        ]),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                               min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 mask_size=28, pos_weight=-1, debug=False)
            for iou in cascade_iou_thrs
        ]))
