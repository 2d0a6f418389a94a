# UperNet with CvT-13 on your own semantic segmentation set of 6 classes:
# configs/cvt13_upernet_ade20k.py (recipe, 160k iterations of 512x512 crops, backbone from the
# converted ImageNet checkpoint) with the data and the class count replaced. Copy this file,
# then change the class names, the paths and num_classes.
#
# Layout assumed (relative to the directory you run from): an image and its label map share a
# base name; a label map is a one-channel PNG of the image's size whose pixel values are class
# indices 0..5 in the order of `classes`, and 255 where a pixel is not labelled (ignored).
#   data/own_seg/img_dir/{train,val,test}/*.jpg
#   data/own_seg/ann_dir/{train,val,test}/*.png
#
#   python tools/check_dataset.py configs/examples/cvt13_upernet_own-seg-6cls.py   # first
#   bash tools/dist_train.sh configs/examples/cvt13_upernet_own-seg-6cls.py 8
#   bash tools/dist_test.sh configs/examples/cvt13_upernet_own-seg-6cls.py \
#       work_dirs/cvt13_upernet_own-seg-6cls/iter_160000.pth 8
#
# docs/dense_prediction.md, "Your own dataset", says what each entry is for.
_base_ = '../cvt13_upernet_ade20k.py'

classes = ('background', 'road', 'building', 'tree', 'water', 'car')
palette = [(0, 0, 0), (128, 64, 128), (70, 70, 70), (107, 142, 35), (0, 130, 200),
           (0, 0, 142)]
metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)
data_root = 'data/own_seg'
dataset_type = 'BaseSegDataset'

# Both heads classify pixels: the UperNet decode head and the auxiliary FCN head.
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

# ADE20K's label maps store "unlabelled" as 0 and class k as k + 1, which its pipelines undo
# with reduce_zero_label=True; these label maps hold the class index itself, so the pipelines
# load them as they are (the data set's reduce_zero_label, False by default).
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
split = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
             seg_map_suffix='.png')
train_dataloader = dict(
    dataset=dict(**split, pipeline=train_pipeline,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')))
val_dataloader = dict(
    dataset=dict(**split, pipeline=test_pipeline,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val')))
test_dataloader = dict(
    dataset=dict(**split, pipeline=test_pipeline,
                 data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test')))
