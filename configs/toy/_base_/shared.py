# What the toy configs share: the classes of the synthetic shape sets and the demo CvT they
# train. Each toy config inherits this file beside its real config and reads these as
# `_base_.<name>`. The classes are the generator's (cvt_mm.toy.shapes); a config file
# cannot import them (mmengine refuses an import in a config whose bases, the real configs,
# are plain configs), so tests/test_tools/test_quickstart.py checks that they agree.
toy_classes = ('circle', 'ellipse', 'square', 'star', 'triangle')  # SHAPE_CLASSES
# The ADE set after reduce_zero_label: label 0 is the background (ADE_TOY_CLASSES).
toy_ade_classes = ('background', ) + toy_classes
# The demo's CvT: the code path of CvT-13 (three stages at strides 4, 8, 16, dw_bn
# projections, the cls token in the last stage) at a size that learns the toy shapes in CPU
# minutes. The tests' smaller one, built for speed only, is cvt_mm.testing.FAST_TEST_ARCH.
demo_arch = dict(embed_dims=[48, 96, 192], depths=[1, 2, 2], num_heads=[1, 2, 4])
# Where tools/quickstart.py leaves the toy classifier: the dense toy configs' backbone init, as
# the real ones start from an ImageNet classifier.
toy_pretrained = 'work_dirs/quickstart/pretrain/cvt_demo_cls_toy.pth'
