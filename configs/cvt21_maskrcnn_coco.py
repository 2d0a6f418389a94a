# Mask R-CNN with FPN and a CvT-21 backbone on COCO 2017, 1x schedule. CvT-21 has CvT-13's
# stage widths (64, 192, 384) with deeper stages, so only the arch and its checkpoint change.
_base_ = ['./cvt13_maskrcnn_coco.py']

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint='checkpoints/cvt21_in1k.pth')))
