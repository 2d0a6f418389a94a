# configs/toy/cvt_demo_maskrcnn_toy.py without pretraining: the demo CvT starts from its own
# random init (trunc-normal Linear layers, unit norms), for the comparison in
# docs/quickstart.md. Same data, model and schedule.
#
#   python tools/train.py configs/toy/cvt_demo_maskrcnn_toy_scratch.py
_base_ = ['./cvt_demo_maskrcnn_toy.py']

model = dict(backbone=dict(init_cfg=None))
