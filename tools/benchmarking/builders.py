"""The models the benchmark's workers measure, all with random weights: cvt_mm's CvT and
classifier, Hugging Face's CvT, timm's Swin-T and mmdet's Mask R-CNN detectors.

torch, mmdet, timm and transformers are imported inside the builders, so importing this module
is free.
"""
from typing import Optional, Sequence, Tuple, Union

Arch = Union[str, dict]


def arch_settings(arch: Arch) -> dict:
    """The arch dict (embed_dims, depths, num_heads, ...) of a CvT arch name or dict, as CvT
    itself parses it (aliases, validation); HF's ``CvtConfig`` needs the numbers."""
    from cvt_mm.models.backbones.cvt import CvT

    return CvT.parse_arch(arch)


def hf_config(arch: Arch, **kwargs):
    """transformers' ``CvtConfig`` of a CvT arch name or dict; ``kwargs`` go to it as well."""
    import transformers

    settings = arch_settings(arch)
    return transformers.CvtConfig(embed_dim=settings['embed_dims'], depth=settings['depths'],
                                  num_heads=settings['num_heads'], **kwargs)


def build_backbone(impl: str, arch: Arch, featmap: bool = True, act: str = 'GELU',
                   **kwargs) -> Tuple:
    """One backbone in eval mode, with random weights (seed 0), and the callable to time.

    Args:
        impl (str): 'cvt_mm' (``CvT``) or 'hf' (transformers' ``CvtModel`` without pooling,
            returning its hidden states).
        arch (str | dict): A CvT arch name or dict.
        featmap (bool): For cvt_mm, the dense-prediction outputs (the three stage maps)
            rather than the cls token. Defaults to True.
        act (str): For cvt_mm, the MLP's activation: HF's exact 'GELU' (to compare with HF)
            or the official 'QuickGELU' (what users train). Defaults to 'GELU'.
        **kwargs: Further ``CvT`` arguments (cvt_mm only), e.g. ``with_cp=True``.

    Returns:
        tuple: ``(model, run)``, where ``run(images)`` is the forward to measure.
    """
    import torch

    torch.manual_seed(0)
    if impl == 'hf':
        import transformers

        model = transformers.CvtModel(hf_config(arch), add_pooling_layer=False)
        return model.eval(), lambda x: model(x, output_hidden_states=True).hidden_states
    from cvt_mm.models.backbones.cvt import CvT

    out = dict(out_type='featmap', out_indices=(0, 1, 2)) if featmap else {}
    model = CvT(arch=arch, act_cfg=dict(type=act), **out, **kwargs)
    model.init_weights()
    return model.eval(), model


def build_detector(config: str, arch: Arch, size: Sequence[int],
                   backbone_options: Optional[dict] = None) -> Tuple:
    """An mmdet Mask R-CNN from its config with random weights, and a random uint8 image.

    Args:
        config (str): An mmdet config as ``mmdet::<path>``, or the name of one of cvt_mm's
            configs (``cvt_mm.apis.config_dir()``).
        arch (str | dict): The CvT arch of cvt_mm's config; anything but '13' (the
            ``--quick`` run's ``FAST_TEST_ARCH``) replaces the config's, with the neck's
            channels to match.
        size (sequence of int): (height, width) of the image and of the test pipeline's
            resize.
        backbone_options (dict, optional): Backbone arguments set over the config's, e.g.
            ``dict(with_cp=True)``. Defaults to None.

    Returns:
        tuple: ``(model, image)``; the model in eval mode with ``cfg`` and ``dataset_meta``
        set, as ``mmdet.apis.inference_detector`` needs them.
    """
    import numpy as np
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.registry import MODELS, init_default_scope

    from cvt_mm.apis import config_dir

    register_all_modules()
    from_mmdet = config.startswith('mmdet::')
    cfg = get_config(config) if from_mmdet else Config.fromfile(config_dir() / config)
    cfg.model.backbone.init_cfg = None  # no checkpoints: random weights
    cfg.model.backbone.update(backbone_options or {})
    if not from_mmdet and arch != '13':
        cfg.model.backbone.arch = arch
        cfg.model.neck.in_channels = arch_settings(arch)['embed_dims']
    for step in cfg.test_dataloader.dataset.pipeline:  # the config's pipeline, our scale
        if step['type'] == 'Resize':
            step['scale'] = (size[1], size[0])
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.cfg = cfg
    model.dataset_meta = dict(classes=tuple(f'class{i}' for i in range(80)))
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return model.eval(), image


def detection_training_batch(model, image, num_boxes: int, seed: int = 0) -> dict:
    """``image`` (HWC uint8) with ``num_boxes`` random boxes, labels and elliptic masks, through
    the detector's data preprocessor in training mode: what ``model(**batch, mode='loss')``
    takes."""
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    corners = rng.uniform(0, 1, (num_boxes, 2)) * [width * 0.7, height * 0.7]
    sides = rng.uniform(0.1, 0.3, (num_boxes, 2)) * [width, height]
    boxes = np.concatenate([corners, corners + sides], axis=1).astype(np.float32)
    rows, cols = np.mgrid[:height, :width]
    masks = np.stack([
        (((cols - (x0 + x1) / 2) / ((x1 - x0) / 2))**2 +
         ((rows - (y0 + y1) / 2) / ((y1 - y0) / 2))**2 <= 1) for x0, y0, x1, y1 in boxes
    ]).astype(np.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(rng.integers(0, 80, num_boxes)),
        masks=BitmapMasks(masks, height, width))
    inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return model.data_preprocessor(dict(inputs=[inputs], data_samples=[sample]), True)


def timm_swin_t(arch: Arch, **kwargs):
    """timm's Swin-T with random weights; for the smoke test's tiny CvT arch (anything but
    '13') a one-block-per-stage Swin of width 16 instead. ``kwargs`` go to
    ``timm.create_model``."""
    import timm

    tiny = {} if arch == '13' else dict(embed_dim=16, depths=(1, 1, 1, 1),
                                        num_heads=(1, 1, 1, 1), window_size=2)
    return timm.create_model('swin_tiny_patch4_window7_224', **tiny, **kwargs)


def build_classifier(impl: str, arch: Arch, size: int):
    """One random-weight classifier (1000 classes) in eval mode and its logits function.

    Args:
        impl (str): 'cvt_mm' (mmpretrain ``ImageClassifier`` of
            ``configs/_base_/models/cvt13.py``), 'hf' (transformers'
            ``CvtForImageClassification``) or 'swin' (timm's ``swin_tiny_patch4_window7_224``
            built for ``size``; for the smoke test's ``FAST_TEST_ARCH`` a one-block-per-stage Swin).
        arch (str | dict): The CvT arch.
        size (int): The square input side (timm's Swin fixes it at build time).
    """
    import torch

    torch.manual_seed(0)
    if impl == 'cvt_mm':
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS

        from cvt_mm.apis import classifier_cfg
        init_default_scope('mmpretrain')
        model = MODELS.build(classifier_cfg(arch))
        model.init_weights()
        return model.eval(), lambda x: model(x, mode='tensor')
    if impl == 'hf':
        import transformers

        model = transformers.CvtForImageClassification(hf_config(arch, num_labels=1000))
        return model.eval(), lambda x: model(x).logits
    if impl == 'swin':
        model = timm_swin_t(arch, img_size=size, num_classes=1000)
        return model.eval(), model
    raise ValueError(f'unknown classifier impl {impl!r}: expected cvt_mm, hf or swin')


def build_dense_backbone(impl: str, arch: Arch, size: Sequence[int]):
    """One random-weight backbone returning its multi-scale maps, and that forward.

    Nothing here needs mmcv's compiled ops (mmdet.models and mmseg.models do), so this runs
    with the ops-free mmcv of docs/install.md's offline wheels.

    Args:
        impl (str): 'cvt_mm' (``CvT`` as configs/cvt13_maskrcnn_coco.py builds it),
            'cvt_mm_fast' (as configs/cvt13_maskrcnn-fast_coco.py does), 'swin' (timm's Swin-T
            with ``features_only``, the same network as mmdet's Swin-T Mask R-CNN backbone)
            or 'hf' (transformers' ``CvtModel``, its hidden states).
        arch (str | dict): The CvT arch ('13' keeps the configs' own).
        size (sequence of int): (height, width) of the input; timm's Swin fixes it at build
            time and pads it to whole windows itself.
    """
    import torch

    if impl == 'hf':
        return build_backbone('hf', arch)  # seeded; the worker sets train/eval per mode
    torch.manual_seed(0)
    if impl == 'swin':
        model = timm_swin_t(arch, features_only=True, img_size=tuple(size))
        return model, model
    if impl not in ('cvt_mm', 'cvt_mm_fast'):
        raise ValueError(f'unknown backbone impl {impl!r}: expected cvt_mm, cvt_mm_fast, swin '
                         'or hf')
    from mmengine.config import Config

    from cvt_mm.apis import config_dir
    from cvt_mm.models import CvT
    name = 'cvt13_maskrcnn-fast_coco.py' if impl == 'cvt_mm_fast' else 'cvt13_maskrcnn_coco.py'
    kwargs = Config.fromfile(config_dir() / name).model.backbone.to_dict()
    kwargs.update(arch=arch, init_cfg=None)
    kwargs.pop('type')
    model = CvT(**kwargs)
    model.init_weights()
    return model, model


