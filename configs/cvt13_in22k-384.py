# CvT-13 pretrained on ImageNet-22k and fine-tuned on ImageNet-1k at 384x384 (83.3% top-1 in
# the paper; CvT-13-384x384-IN-22k.pth, which has the 1000-class head). Model and evaluation are
# those of cvt13_in1k-384.py; only the weights differ. The 22k pretraining and 1k fine-tuning
# recipe is not published, so the training settings inherited here are the 1k 384 recipe.
#   python tools/convert_checkpoint.py CvT-13-384x384-IN-22k.pth checkpoints/cvt13_in22k-384.pth
#   python tools/test.py configs/cvt13_in22k-384.py checkpoints/cvt13_in22k-384.pth
_base_ = ['./cvt13_in1k-384.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
