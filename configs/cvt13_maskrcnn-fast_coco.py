# configs/cvt13_maskrcnn_coco.py with the keys and values of the first stage's attention
# projected at stride 4 instead of 2: at 800x1333 that stage attends 66,800 queries to 4,200
# keys instead of 16,700, the one global attention that makes CvT-13 costlier than Swin-T at
# detection resolution. The conv weights do not depend on the stride, so the same ImageNet
# checkpoint loads unchanged. The accuracy cost of the change has not been measured yet.
_base_ = ['./cvt13_maskrcnn_coco.py']

model = dict(backbone=dict(stride_kv=(4, 2, 2)))
