# UperNet with a CvT-21 backbone on ADE20K, 512x512 crops, 160k iterations. CvT-21 has CvT-13's
# stage widths (64, 192, 384) with deeper stages, so only the arch and its checkpoint change.
_base_ = ['./cvt13_upernet_ade20k.py']

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint='checkpoints/cvt21_in1k.pth')))
