# configs/cvt13_upernet_ade20k.py with every stage's keys and values at stride 4, as in
# configs/cvt13_maskrcnn-fast_coco.py (the same ImageNet checkpoint loads unchanged). Its mIoU
# cost has not been measured.
_base_ = ['./cvt13_upernet_ade20k.py']

model = dict(backbone=dict(stride_kv=4))
