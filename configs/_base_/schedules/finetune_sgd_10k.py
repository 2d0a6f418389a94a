# Fine-tuning schedule of the CvT paper's transfer experiments, which adopt ViT's protocol:
# SGD with momentum 0.9, a total batch of 512, 10,000 steps for CIFAR-10/100 (500 for Pets and
# Flowers-102: finetune_sgd_500.py), cosine decay. Choices the paper leaves to ViT's protocol or
# does not state, taken here: lr 0.003 per 512 images (FINETUNE.BASE_LR / BATCH_SIZE defaults
# in microsoft/CvT lib/config/default.py; ViT swept {0.001, 0.003, 0.01, 0.03}), no weight decay
# and gradient clipping at global norm 1 (ViT), linear warmup over the first 5% of the steps.
#
# It brings mmpretrain's default runtime along, its hooks switched to counting iterations (two
# bases may not both set default_hooks).
_base_ = ['mmpretrain::_base_/default_runtime.py']

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.003, momentum=0.9, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0),
)

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=500, end=10000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=1000)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(base_batch_size=512, enable=True)

# Iteration-based training: log, checkpoint and report by iteration.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2),
)
log_processor = dict(by_epoch=False)
