# Mask R-CNN with CvT-13 on your own COCO-format instance segmentation set of 5 classes:
# configs/cvt13_maskrcnn_coco.py (recipe, 1x schedule, backbone from the converted ImageNet
# checkpoint) with the data and the class count replaced. Copy this file, then change the class
# names, the paths and, in `model`, the two num_classes to your count.
#
# Layout assumed (relative to the directory you run from; the json files in COCO's format,
# category names equal to `classes`, boxes as [x, y, w, h], masks as polygons or RLE):
#   data/own_coco/annotations/train.json   data/own_coco/images/train/*.jpg
#   data/own_coco/annotations/val.json     data/own_coco/images/val/*.jpg
#   data/own_coco/annotations/test.json    data/own_coco/images/test/*.jpg
#
#   python tools/check_dataset.py configs/examples/cvt13_maskrcnn_own-coco-5cls.py   # first
#   bash tools/dist_train.sh configs/examples/cvt13_maskrcnn_own-coco-5cls.py 8
#   bash tools/dist_test.sh configs/examples/cvt13_maskrcnn_own-coco-5cls.py \
#       work_dirs/cvt13_maskrcnn_own-coco-5cls/epoch_12.pth 8
#
# docs/dense_prediction.md, "Your own dataset", says what each entry is for.
_base_ = '../cvt13_maskrcnn_coco.py'

classes = ('apple', 'banana', 'orange', 'pear', 'plum')
# One RGB colour per class, for the drawings of tools/test.py --show-dir and tools/infer.py.
metainfo = dict(classes=classes,
                palette=[(220, 20, 60), (255, 215, 0), (255, 140, 0), (154, 205, 50),
                         (142, 69, 133)])
data_root = 'data/own_coco/'

# Every head with a class count: the box head and the mask head. (The RPN head's num_classes,
# 1, is its object-or-not score and stays.)
model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))))

# CocoDataset keeps only the categories named in metainfo, and maps them to labels 0..4 in
# this order; every split gets the same metainfo.
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/train.json', data_prefix=dict(img='images/train/')))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/val.json', data_prefix=dict(img='images/val/')))
test_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/test.json', data_prefix=dict(img='images/test/')))
# COCO metrics read the annotations themselves: the same files as the data sets.
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = dict(ann_file=data_root + 'annotations/test.json')
