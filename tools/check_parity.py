"""Measure cvt_mm's numerical agreement with the reference implementations.

* Hugging Face transformers (``CvtForImageClassification``): random weights with randomised
  norms and BN statistics, converted with ``cvt_mm.checkpoint.key_mapping``; cvt_mm runs with
  HF's exact GELU. Logits and the three stage maps are compared
  (``cvt_mm.testing.compare_with_hf``).
* The official microsoft/CvT code (optional, ``--official-repo DIR`` pointing at a checkout of
  https://github.com/microsoft/CvT; needs ``pip install timm einops``): the official model with
  QuickGELU, its state dict converted as an official checkpoint, against cvt_mm with its
  default QuickGELU (``cvt_mm.testing.official_reference``).

    python tools/check_parity.py
    python tools/check_parity.py --official-repo /path/to/CvT
"""
import argparse

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

import torch
from rich.console import Console
from rich.table import Table

import cvt_mm  # noqa: F401
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import build_hf_and_cvt_mm, compare_with_hf
from cvt_mm.testing.official_reference import compare_with_official

SIZES = [(224, 224), (131, 97), (384, 384)]


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
