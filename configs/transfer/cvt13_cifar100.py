# Fine-tune CvT-13 on CIFAR-100 (data/cifar100, mmpretrain's CIFAR100: cifar-100-python/,
# downloaded there if absent): cvt13_cifar10.py with 100 classes.
_base_ = ['./cvt13_cifar10.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(head=dict(num_classes=100))
data_preprocessor = dict(num_classes=100)

train_dataloader = dict(dataset=dict(type='CIFAR100', data_root='data/cifar100'))
val_dataloader = dict(dataset=dict(type='CIFAR100', data_root='data/cifar100'))
test_dataloader = val_dataloader
