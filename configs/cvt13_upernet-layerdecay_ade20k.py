# CvT-13 UperNet 160k (cvt13_upernet_ade20k.py) with layer-wise learning-rate decay: backbone
# parameters train at lr * 0.9 ** (17 - depth - 1), depth from CvT.get_layer_depth, and the
# UperNet and auxiliary FCN heads keep the base lr. Weight decay stays off for norms and the
# cls token (the base config's paramwise_cfg, which this one extends).
#
# 0.9 is the rate of mmseg's ConvNeXt and BEiT UperNets (convnext/, beit/ configs); over
# CvT-13's 17 depths it leaves the stage-0 embedding at 0.9 ** 16 ~ 0.19 of the base lr.
#
#   python tools/train.py configs/cvt13_upernet-layerdecay_ade20k.py
_base_ = ['./cvt13_upernet_ade20k.py']

optim_wrapper = dict(
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
