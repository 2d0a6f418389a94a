# CvT-13 image classifier: the last stage's cls token, after the final LayerNorm, into a linear
# head, as microsoft/CvT's lib/models/cls_cvt.py classifies. The loss and batch augments are
# those of the official ImageNet recipe (experiments/imagenet/cvt/cvt-13-224x224.yaml): label
# smoothing 0.1 with Mixup (alpha 0.8) or CutMix (alpha 1.0), one of the two per batch as timm's
# Mixup(switch_prob=0.5) chooses.
model = dict(
    type='ImageClassifier',
    # Stochastic depth: the arch's official per-stage rates (0, 0, 0.1 for CvT-13).
    backbone=dict(type='CvT', arch='13', out_type='cls_token'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        # The official head init (trunc-normal std 0.02, zero bias) rather than mmpretrain's
        # normal std 0.01.
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),  # training accuracy against mixed labels means nothing
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
