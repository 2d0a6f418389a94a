# DINO (4 scales) with a CvT-13 backbone on COCO 2017 detection (data/coco/), 12 epochs.
#
# The recipe is mmdet's DINO-4scale (dino/dino-4scale_r50_8xb2-12e_coco.py, whose optimizer
# mmdet's Swin-L DINO keeps): AdamW lr 1e-4, weight decay 1e-4, the backbone at 0.1x the lr,
# gradient clipping at 0.1, a step at epoch 11, 16 images per iteration (8 GPUs x 2); drop path
# 0.2 as in cvt13_maskrcnn_coco.py.
#
# DINO-4scale's levels are at strides 8, 16, 32 and 64 (ResNet's C3-C5 and one extra). CvT's
# stage 1 and 2 maps (strides 8, 16) give the first two; mmdet's ChannelMapper neck maps them to
# 256 channels and adds strides 32 and 64 with two 3x3 stride-2 convs, the first on the
# stride-16 backbone map (1.62M parameters in the neck, docs/dense_prediction.md). The stride-4
# stage is not output (out_indices (1, 2)), as in cvt13_retinanet_coco.py.
#
#   python tools/train.py configs/cvt13_dino_coco.py
#   bash tools/dist_train.sh configs/cvt13_dino_coco.py 8
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, out_indices=(1, 2),
                  drop_path_rate=0.2),
    neck=dict(in_channels=_base_.cvt_stage_widths[1:], num_outs=4))
