# UperNet with a CvT-13 backbone on ADE20K (data/ade/ADEChallengeData2016), 512x512 crops,
# 160k iterations.
#
# The recipe is mmseg's Swin-T UperNet
# (swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py): AdamW lr 6e-5,
# weight decay 0.01, 1500 linear warmup iterations then linear (power 1) decay, drop path 0.3,
# 16 images per iteration (8 GPUs x 2).
#
#   python tools/train.py configs/cvt13_upernet_ade20k.py
#   bash tools/dist_train.sh configs/cvt13_upernet_ade20k.py 8
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/models/cvt13_dense.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
num_classes = 150
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(_base_.cvt_dense_backbone, _delete_=True, drop_path_rate=0.3),
    # UperNet fuses all three stages (strides 4, 8, 16); its pyramid pooling runs on the last.
    decode_head=dict(in_channels=_base_.cvt_stage_widths, in_index=[0, 1, 2],
                     num_classes=num_classes),
    # The auxiliary FCN head sits on the stride-16 map (stage index 2), the features mmseg's
    # Swin and ResNet UperNets supervise with it: stride 16, 384 channels as in Swin-T.
    # Stage index 1 would put a loss after only 3 of CvT-13's 13 blocks.
    auxiliary_head=dict(in_channels=_base_.cvt_stage_widths[2], in_index=2,
                        num_classes=num_classes))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # As in cvt13_maskrcnn_coco.py: no weight decay on the cls token nor on any norm layer.
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'cls_token': dict(decay_mult=0.)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

train_dataloader = dict(batch_size=2)
