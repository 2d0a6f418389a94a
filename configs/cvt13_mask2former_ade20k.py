# Mask2Former with a CvT-13 backbone on ADE20K semantic segmentation
# (data/ade/ADEChallengeData2016), 512x512 crops, 160k iterations.
#
# The recipe is mmseg's Swin-T Mask2Former
# (mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py): AdamW lr 1e-4, weight decay
# 0.05, the backbone at 0.1x the lr, no weight decay on norms, the cls token and the query and
# level embeddings, gradient clipping at 0.01, poly decay (power 0.9), drop path 0.3, 16 images
# per iteration (8 GPUs x 2).
#
# The stride-32 level the pixel decoder expects comes from mmdet's ChannelMapper neck, as in
# cvt13_mask2former_coco.py (docs/dense_prediction.md).
#
#   python tools/train.py configs/cvt13_mask2former_ade20k.py
#   bash tools/dist_train.sh configs/cvt13_mask2former_ade20k.py 8
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    './_base_/schedules/cvt13_backbone_keys.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm', 'mmdet.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, drop_path_rate=0.3),
    neck=dict(type='mmdet.ChannelMapper', in_channels=_base_.cvt_stage_widths, kernel_size=1,
              out_channels=256, act_cfg=None, norm_cfg=dict(type='GN', num_groups=32),
              num_outs=4),
    decode_head=dict(in_channels=[256, 256, 256, 256]))

# As in cvt13_mask2former_coco.py.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.cvt13_backbone_keys}}))
