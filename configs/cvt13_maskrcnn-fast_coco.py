# configs/cvt13_maskrcnn_coco.py with every stage's keys and values projected at stride 4
# instead of 2. At 800x1333 the first stage's one global attention (66,800 queries x 16,700
# keys, 143 GMACs) is what makes CvT-13 costlier than Swin-T; with 4,200 keys it is 36 GMACs,
# the second stage's two drop from 54 to 13 and the last stage's ten from 34 to 9: the backbone
# goes from 320 to 143 GMACs (Swin-T's: 100). Every query still attends to the whole image.
# The conv weights do not depend on the stride, so the same ImageNet checkpoint loads
# unchanged. Windowed attention in the first two stages (CvT's window_size) ran as fast and
# lost as much toy accuracy. Latency, GMACs and the toy accuracy against the default (lower,
# on the toy set, by more than 0.03): docs/benchmarks.md, docs/quickstart.md.
_base_ = ['./cvt13_maskrcnn_coco.py']

model = dict(backbone=dict(stride_kv=4))
