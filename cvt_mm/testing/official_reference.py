"""The official microsoft/CvT classifier beside cvt_mm's, with the same weights.

The official code (https://github.com/microsoft/CvT, ``lib/models/cls_cvt.py``) is not a
package: it is imported from a checkout given by path, and needs ``timm`` and ``einops``. It
imports ``torch._six``, gone from current torch; a stand-in module is provided for it. Used by
``tools/check_parity.py``, whose numbers are in docs/parity.md.
"""
import collections.abc
import sys
import types
from functools import partial
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ..apis import classifier_cfg
from ..checkpoint.key_mapping import convert_state_dict
from ..models.backbones.cvt import CvT
from .hf_reference import randomize_norms


def official_model(repo: str, arch: dict, seed: int) -> nn.Module:
    """The official ConvolutionalVisionTransformer (QuickGELU, LayerNorm eps 1e-5) of ``arch``
    with random weights and random norms, in eval mode.

    Args:
        repo (str): A checkout of microsoft/CvT.
        arch (dict): ``embed_dims``, ``depths`` and ``num_heads`` as ``CvT``'s ``arch``.
        seed (int): Seed of the weights and of the norms' noise.
    """
    sys.modules.setdefault('torch._six', types.SimpleNamespace(container_abcs=collections.abc))
    sys.path.insert(0, repo)
    from lib.models.cls_cvt import ConvolutionalVisionTransformer, LayerNorm, QuickGELU

    stages = len(arch['depths'])
    spec = dict(
        NUM_STAGES=stages, PATCH_SIZE=list(CvT.patch_sizes), PATCH_STRIDE=list(CvT.patch_strides),
        PATCH_PADDING=list(CvT.patch_paddings), DIM_EMBED=arch['embed_dims'],
        DEPTH=arch['depths'], NUM_HEADS=arch['num_heads'], MLP_RATIO=[4.] * stages,
        QKV_BIAS=[True] * stages, DROP_RATE=[0.] * stages, ATTN_DROP_RATE=[0.] * stages,
        DROP_PATH_RATE=[0.] * stages, CLS_TOKEN=[False] * (stages - 1) + [True],
        QKV_PROJ_METHOD=['dw_bn'] * stages, KERNEL_QKV=[3] * stages, PADDING_Q=[1] * stages,
        PADDING_KV=[1] * stages, STRIDE_KV=[2] * stages, STRIDE_Q=[1] * stages)
    torch.manual_seed(seed)
    model = ConvolutionalVisionTransformer(
        in_chans=3, num_classes=1000, act_layer=QuickGELU,
        norm_layer=partial(LayerNorm, eps=1e-5), spec=spec)
    randomize_norms(model, seed)
    return model.eval()


@torch.no_grad()
def compare_with_official(repo: str, arch: dict, sizes: Sequence[Tuple[int, int]],
                          seed: int = 0) -> List[Tuple[Tuple[int, int], float, float]]:
    """cvt_mm's classifier (default QuickGELU, as the official) on the official model's
    converted weights: ``(size, max |logit diff|, max |official logit|)`` per input size, on a
    random batch of 2 (the official forward squeezes a batch of 1 to shape (C,))."""
    official = official_model(repo, arch, seed)
    ours = MODELS.build(classifier_cfg(arch, 1000))
    ours.load_state_dict(convert_state_dict(official.state_dict()), strict=True)
    ours.eval()
    rows = []
    for size in sizes:
        images = torch.randn(2, 3, *size)
        reference = official(images)
        rows.append((tuple(size), (ours(images, mode='tensor') - reference).abs().max().item(),
                     reference.abs().max().item()))
    return rows
