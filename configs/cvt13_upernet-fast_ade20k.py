# configs/cvt13_upernet_ade20k.py with the backbone options of configs/cvt13_maskrcnn-fast_coco.py
# (keys and values pooled to stride 4, first-stage attention within 56x56 windows; the same
# ImageNet checkpoint loads unchanged). Its mIoU cost has not been measured.
_base_ = ['./cvt13_upernet_ade20k.py']

model = dict(backbone=dict(pool_kv=2, window_size=(56, 0, 0)))
