# The 500-step fine-tuning schedule of the CvT paper for Oxford-IIIT Pets and Flowers-102:
# finetune_sgd_10k.py shortened, warmup again 5% of the steps.
_base_ = ['./finetune_sgd_10k.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=25, end=500),
]
train_cfg = dict(max_iters=500, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=100))
