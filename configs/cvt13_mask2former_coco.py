# Mask2Former with a CvT-13 backbone on COCO 2017 instance segmentation (data/coco/): 50 epochs
# (368,750 iterations of 16 images) of large-scale jitter at 1024x1024.
#
# The recipe is mmdet's Swin-T Mask2Former
# (mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py): AdamW lr 1e-4, weight decay
# 0.05, the backbone at 0.1x the lr, no weight decay on norms, the cls token and the query and
# level embeddings, gradient clipping at 0.01, steps at iterations 327,778 and 355,092, drop path
# 0.3, 16 images per iteration (8 GPUs x 2).
#
# CvT has three stages (strides 4, 8, 16); Mask2Former's pixel decoder takes four (4..32) and runs
# its deformable encoder on the last three. mmdet's ChannelMapper neck maps the three stages to
# 256 channels (1x1 conv + GroupNorm each) and adds the stride-32 level with one 3x3 stride-2
# conv + GroupNorm on the stride-16 backbone map: 1.05M parameters in all
# (docs/dense_prediction.md).
#
#   python tools/train.py configs/cvt13_mask2former_coco.py
#   bash tools/dist_train.sh configs/cvt13_mask2former_coco.py 8
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    './_base_/schedules/cvt13_backbone_keys.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, drop_path_rate=0.3),
    neck=dict(type='ChannelMapper', in_channels=_base_.cvt_stage_widths, kernel_size=1,
              out_channels=256, act_cfg=None, norm_cfg=dict(type='GN', num_groups=32),
              num_outs=4),
    panoptic_head=dict(in_channels=[256, 256, 256, 256]),
    init_cfg=None)

# The backbone at 0.1x the lr, no weight decay on its norms and cls token (the base's query and
# level embeddings keep theirs).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.cvt13_backbone_keys}}))
