# Parameter groups of a CvT-13 backbone under a query-based head's recipe (Mask2Former): the
# backbone at 0.1x the lr, and no weight decay on its norms (the LayerNorms and the BatchNorms of
# the q/k/v projections) nor on its cls token. mmengine applies norm_decay_mult only to parameters
# that no custom key names, and 'backbone' names them all, so the norms are listed one by one,
# as mmdet's and mmseg's Swin-T Mask2Former configs list Swin's. A config takes them with
#   optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.cvt13_backbone_keys}}))
cvt13_depths = (1, 2, 10)
backbone_norm = dict(lr_mult=0.1, decay_mult=0.0)
cvt13_backbone_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'backbone.stages.2.cls_token': backbone_norm,
}
cvt13_backbone_keys.update({f'backbone.stages.{stage}.patch_embed.norm': backbone_norm
                            for stage in range(3)})
cvt13_backbone_keys.update({f'backbone.out_norm{stage}': backbone_norm for stage in range(3)})
cvt13_backbone_keys.update({
    f'backbone.stages.{stage}.blocks.{block}.{norm}': backbone_norm
    for stage, num_blocks in enumerate(cvt13_depths) for block in range(num_blocks)
    for norm in ('norm1', 'norm2', 'attn.conv_proj_q.bn', 'attn.conv_proj_k.bn',
                 'attn.conv_proj_v.bn')})
