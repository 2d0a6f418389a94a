# Fine-tune CvT-13 on Oxford Flowers-102 (data/flowers102 in mmpretrain's Flowers102 layout:
# jpg/image_*.jpg, imagelabels.mat, setid.mat), as in the CvT paper's transfer experiments:
# 384x384 inputs, SGD, 500 steps of 512 images, trained on train+val, evaluated on test.
_base_ = [
    '../_base_/models/cvt13_finetune.py',
    '../_base_/datasets/finetune_384.py',
    '../_base_/schedules/finetune_sgd_500.py',
]
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(head=dict(num_classes=102))
data_preprocessor = dict(num_classes=102)

train_dataloader = dict(dataset=dict(
    type='Flowers102', data_root='data/flowers102', split='trainval',
    pipeline=[dict(type='LoadImageFromFile'), *_base_.train_transforms]))
val_dataloader = dict(dataset=dict(
    type='Flowers102', data_root='data/flowers102', split='test',
    pipeline=[dict(type='LoadImageFromFile'), *_base_.test_transforms]))
test_dataloader = val_dataloader
