#!/usr/bin/env python
"""Generate the synthetic toy shape data sets (cvt_mm.toy.shapes) under --out.

    python tools/make_toy_data.py --out data/toy [--seed 0] [--num-train 300] [--num-val 60]
        [--image-size 256] [--tasks coco ade imagenet] [--force]

A set already there with the same parameters is skipped (so is one with other parameters or
drawn by an older version, with a note; --force regenerates those). A directory this tool did
not make is never touched. Layouts and label conventions: cvt_mm/toy/shapes.py.
"""
import argparse
from pathlib import Path

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

from cvt_mm.toy import LAYOUTS, default_params, ensure_toy_set


def parse_args(argv=None):
    scenes, classification = default_params('coco'), default_params('imagenet')
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('data/toy'), help='output root')
    parser.add_argument('--seed', type=int, default=scenes['seed'])
    parser.add_argument('--num-train', type=int, default=scenes['num_train'],
                        help='COCO/ADE train images')
    parser.add_argument('--num-val', type=int, default=scenes['num_val'],
                        help='COCO/ADE val images')
    parser.add_argument('--image-size', type=int, default=scenes['image_size'],
                        help='COCO/ADE image side')
    parser.add_argument('--cls-train-per-class', type=int,
                        default=classification['train_per_class'],
                        help='ImageNet-style train images per class')
    parser.add_argument('--cls-val-per-class', type=int,
                        default=classification['val_per_class'],
                        help='ImageNet-style val images per class')
    parser.add_argument('--tasks', nargs='+', choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument('--force', action='store_true',
                        help='regenerate sets that already exist (deletes them first)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    scenes = dict(num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
                  seed=args.seed)
    params = dict(coco=scenes, ade=scenes,
                  imagenet=dict(train_per_class=args.cls_train_per_class,
                                val_per_class=args.cls_val_per_class, seed=args.seed))
    for task in args.tasks:
        print(ensure_toy_set(args.out, task, params[task], force=args.force).message, flush=True)


if __name__ == '__main__':
    main()
