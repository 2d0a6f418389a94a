# microsoft/CvT's ImageNet-1k schedule for CvT-13 (experiments/imagenet/cvt/cvt-13-224x224.yaml
# and cvt-13-384x384.yaml); mmpretrain's Swin AdamW schedule with the official values.
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py']

optim_wrapper = dict(
    # AdamW with torch's default betas/eps (the official optimizer passes only lr and wd):
    # lr 2.5e-4 per 256 images (TRAIN.LR with BATCH_SIZE_PER_GPU 256, scaled by the number of
    # GPUs), weight decay 0.05.
    optimizer=dict(lr=2.5e-4, weight_decay=0.05),
    # Parameters without weight decay, as lib/optim/build.py (set_wd) selects them with
    # TRAIN.WITHOUT_WD_LIST ['bn', 'bias', 'ln'] and the model's no_weight_decay() (cls_token,
    # pos_embed; CvT has no pos_embed): BatchNorm and LayerNorm weights and biases, every
    # bias, the cls token. Depthwise conv weights keep their decay ('dw' is not in the list).
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'cls_token': dict(decay_mult=0.0)}),
)

# timm's cosine scheduler as configured there (warmup_epochs 5 from warmup_lr 1e-6, min_lr 1e-5,
# 300 epochs; its 10 cooldown epochs are never reached since training stops at END_EPOCH 300).
# mmengine steps it per iteration where timm steps per epoch; the curves agree otherwise.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 2.5e-4, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)

# The lr above is per 256 images: scale it to the actual total batch (GPUs x batch_size)
# whatever the launch, as the official code does (TRAIN.SCALE_LR).
auto_scale_lr = dict(base_batch_size=256, enable=True)
# The official runs use mixed precision (AMP.ENABLED); on GPUs pass --amp to tools/train.py.
