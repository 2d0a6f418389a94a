# CvT-W24: the wide variant (widths 192, 768, 1024; depths 2, 2, 20; drop path 0.3 in the last
# stage), otherwise CvT-13's classifier.
_base_ = ['./cvt13.py']
model = dict(backbone=dict(arch='w24'), head=dict(in_channels=1024))
