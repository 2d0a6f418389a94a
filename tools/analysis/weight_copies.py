"""Copies of weights that one training forward of the CvT backbone keeps for backward
(``cvt_mm.testing.saved_tensors``): scaled or stacked weights made per call, which live until
backward. On the meta device (shapes only) the modules take the path a GPU takes.

    python tools/analysis/weight_copies.py [--arch 13] [--size 224] [--device cpu|meta] [--plain]
"""
import argparse

import torch

from cvt_mm.models import CvT
from cvt_mm.testing.saved_tensors import weight_copies_saved_for_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='13')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'meta'])
    parser.add_argument('--plain', action='store_true', help='CvT(cpu_kernels=False)')
    args = parser.parse_args()
    with torch.device(args.device):
        model = CvT(arch=args.arch, cpu_kernels=not args.plain).train()
        images = torch.randn(1, 3, args.size, args.size)
    copies = weight_copies_saved_for_backward(model, lambda: model(images))
    print(f'CvT-{args.arch} at {args.size}, {args.device}, '
          f"{'plain modules' if args.plain else 'CPU kernels on'}: {copies.count} weight copies "
          f'saved for backward, {copies.bytes / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()
