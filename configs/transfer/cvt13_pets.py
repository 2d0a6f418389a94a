# Fine-tune CvT-13 on Oxford-IIIT Pets (data/pets in mmpretrain's OxfordIIITPet layout:
# images/*.jpg, annotations/{trainval,test}.txt), as in the CvT paper's transfer experiments:
# 384x384 inputs, SGD, 500 steps of 512 images, trained on trainval, evaluated on test.
_base_ = ['./cvt13_flowers102.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)

model = dict(head=dict(num_classes=37))
data_preprocessor = dict(num_classes=37)

train_dataloader = dict(dataset=dict(type='OxfordIIITPet', data_root='data/pets'))
val_dataloader = dict(dataset=dict(type='OxfordIIITPet', data_root='data/pets'))
test_dataloader = val_dataloader
