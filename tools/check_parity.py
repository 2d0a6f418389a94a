"""Measure cvt_mm's numerical agreement with the reference implementations.

* Hugging Face transformers (``CvtForImageClassification``): random weights with randomised
  norms and BN statistics, converted with ``cvt_mm.models.weight_conversion``; cvt_mm runs with
  HF's exact GELU. Logits and the three stage maps are compared.
* The official microsoft/CvT code (optional, ``--official-repo DIR`` pointing at a checkout of
  https://github.com/microsoft/CvT; needs ``pip install timm einops``): the official model with
  QuickGELU is built from its own ``spec``, its state dict is converted as an official
  checkpoint, and cvt_mm runs with its default QuickGELU. The official code imports
  ``torch._six``, gone from current torch; a stand-in module is provided for it.

    python tools/check_parity.py
    python tools/check_parity.py --official-repo /path/to/CvT
"""
import argparse
import collections.abc
import sys
import types
from functools import partial

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

import torch
from mmpretrain.registry import MODELS
from rich.console import Console
from rich.table import Table

import cvt_mm  # noqa: F401
from cvt_mm.apis import classifier_cfg
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.models.weight_conversion import convert_state_dict
from cvt_mm.testing import build_hf_and_cvt_mm, compare_with_hf, randomize_norms

SIZES = [(224, 224), (131, 97), (384, 384)]


def official_model(repo: str, arch: dict, seed: int):
    """The official ConvolutionalVisionTransformer (QuickGELU, LayerNorm eps 1e-5), random."""
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
def compare_with_official(repo: str, arch: dict, sizes, seed: int = 0):
    official = official_model(repo, arch, seed)
    ours = MODELS.build(classifier_cfg(arch, 1000))  # default act: QuickGELU, as official
    ours.load_state_dict(convert_state_dict(official.state_dict()), strict=True)
    ours.eval()
    rows = []
    for size in sizes:
        # batch of 2: the official forward squeezes a batch of 1 to shape (C,)
        images = torch.randn(2, 3, *size)
        reference = official(images)
        rows.append((size, (ours(images, mode='tensor') - reference).abs().max().item(),
                     reference.abs().max().item()))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='13', choices=sorted(CvT.arch_zoo))
    parser.add_argument('--official-repo', help='checkout of microsoft/CvT')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    arch = CvT.arch_zoo[args.arch]
    torch.manual_seed(args.seed)

    table = Table(title=f'CvT-{args.arch}: max |cvt_mm - reference| (fp32, eval, random weights)')
    for column in ('reference', 'input', 'logits', 'max |logit|', 'stage 0', 'stage 1',
                   'stage 2'):
        table.add_column(column, justify='right')
    hf_model, ours = build_hf_and_cvt_mm(arch, 1000, args.seed)
    for size in SIZES:
        diffs = compare_with_hf(hf_model, ours, torch.randn(2, 3, *size))
        table.add_row('HF transformers (GELU)', f'2x3x{size[0]}x{size[1]}',
                      f"{diffs['logits']:.2e}", f"{diffs['logits_scale']:.2f}",
                      *(f'{d:.2e}' for d in diffs['stages']))
    if args.official_repo:
        for size, diff, scale in compare_with_official(args.official_repo, arch, SIZES,
                                                       args.seed):
            table.add_row('official (QuickGELU)', f'2x3x{size[0]}x{size[1]}', f'{diff:.2e}',
                          f'{scale:.2f}', '-', '-', '-')
    Console(width=150).print(table)


if __name__ == '__main__':
    main()
