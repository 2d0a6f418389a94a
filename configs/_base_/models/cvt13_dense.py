# The CvT-13 backbone of every dense config (detection, segmentation; configs/cvt13_*_coco.py,
# configs/cvt13_*_ade20k.py and those built on them), and the widths of its three stages, from
# which each config derives its neck's or decode heads' in_channels. A config inherits this file
# beside its library's bases and writes
#   backbone=dict(_base_.cvt_dense_backbone, _delete_=True, drop_path_rate=...)
#   neck=dict(in_channels=_base_.cvt_stage_widths)   # or a slice: the stages it outputs
#
# Another arch: the widths are read when a config is loaded, not when the model is built, so a
# config that sets model.backbone.arch must set the in_channels that follow from it too
# (CvT.arch_zoo[arch]['embed_dims'] at the backbone's out_indices). CvT-21 has these widths
# (configs/cvt21_*.py change only the arch and checkpoint); CvT-W24's are [192, 768, 1024].
# tests/test_configs/test_dense_configs.py checks every dense config's in_channels against the
# arch it builds.
cvt_stage_widths = [64, 192, 384]  # CvT.arch_zoo['13']['embed_dims'], strides 4, 8, 16
cvt_dense_backbone = dict(
    type='CvT',
    arch='13',
    out_type='featmap',
    out_indices=(0, 1, 2),
    # The converted ImageNet classifier (tools/convert_checkpoint.py writes it); point
    # elsewhere with --cfg-options model.backbone.init_cfg.checkpoint=PATH.
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cvt13_in1k.pth',
                  prefix='backbone.'))
