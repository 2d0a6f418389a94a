# configs/cvt13_maskrcnn_coco.py made cheap at detection resolution, with the same parameters
# (the ImageNet checkpoint loads unchanged). At 800x1333 the first stage's one global attention
# (66,800 queries x 16,700 keys, 143 of the backbone's 320 GMACs) is what makes CvT-13 costlier
# than Swin-T (100 GMACs). Here every stage's keys and values are pooled to stride 4 (the
# stride-2 dw_bn projections averaged over 2x2 blocks, CvT's pool_kv), and the first stage
# attends within 56x56 windows, its token grid at the 224 px of ImageNet pretraining (ViTDet's
# choice); the last two stages stay global. Taking the same key grid with a stride-4 conv
# (stride_kv=4) instead, which leaves 7 of 16 positions out of every key, cost toy accuracy;
# the pooled keys did not. Latency, GMACs and the toy accuracy: docs/benchmarks.md,
# docs/quickstart.md.
_base_ = ['./cvt13_maskrcnn_coco.py']

model = dict(backbone=dict(pool_kv=2, window_size=(56, 0, 0)))
