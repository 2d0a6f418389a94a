# CvT-21 pretrained on ImageNet-22k and fine-tuned on ImageNet-1k at 384x384 (84.9% top-1 in
# the paper; CvT-21-384x384-IN-22k.pth, which has the 1000-class head). Model and evaluation are
# those of cvt21_in1k-384.py; only the weights differ. The 22k pretraining and 1k fine-tuning
# recipe is not published, so the training settings inherited here are the 1k 384 recipe.
#   python tools/convert_checkpoint.py CvT-21-384x384-IN-22k.pth checkpoints/cvt21_in22k-384.pth
#   python tools/test.py configs/cvt21_in22k-384.py checkpoints/cvt21_in22k-384.pth
_base_ = ['./cvt21_in1k-384.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
