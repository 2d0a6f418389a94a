# CvT-13 Mask R-CNN 1x (cvt13_maskrcnn_coco.py) with layer-wise learning-rate decay: backbone
# parameters train at lr * 0.9 ** (17 - depth - 1), depth from CvT.get_layer_depth (stage 0's
# embedding at depth 0, one depth per embedding and per block, norms of the outputs at 16), and
# FPN, RPN and the RoI heads keep the base lr. Weight decay stays off for norms and the cls
# token (the base config's paramwise_cfg, which this one extends).
#
# 0.9 is the rate of mmseg's ConvNeXt and BEiT UperNets (convnext/, beit/ configs): those
# backbones have 12 to 14 depths, CvT-13 has 17, so its stage-0 embedding ends at
# 0.9 ** 16 ~ 0.19 of the base lr, its last block at 0.9. A smaller rate (ViT's 0.65-0.75)
# suits a shallower stack of identical blocks more than CvT's three stages.
#
#   python tools/train.py configs/cvt13_maskrcnn-layerdecay_coco.py
_base_ = ['./cvt13_maskrcnn_coco.py']

optim_wrapper = dict(
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
