# CvT-21: CvT-13's classifier with deeper stages (depths 1, 4, 16); widths, heads, drop path
# rates and the head width (384) are the same.
_base_ = ['./cvt13.py']
model = dict(backbone=dict(arch='21'))
