#!/usr/bin/env python
"""Run a detection (mmdet), segmentation (mmseg) or classification (mmpretrain) model on images.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir DIR] [--device cpu|cuda]

INPUT is an image, a folder (its images, recursively) or a quoted glob ('data/*.jpg'). The task
comes from the config's default_scope; the library's own inferencer (DetInferencer,
MMSegInferencer, ImageClassificationInferencer) runs each image and DIR receives the drawings
(vis/) and the predictions as json (preds/). An unreadable image is reported on one line and
skipped; the exit status is then 1. CHECKPOINT 'none' keeps random weights.
"""
import argparse
import sys

from _cli import KnownLibraryNotices  # noqa: F401  (first: quiets known third-party notices)

from cvt_mm.apis import build_inferencer, infer_images, list_images
from cvt_mm.apis.inference import print_failure_summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Inference with an mmdet, mmseg or mmpretrain config on images.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('input', help='an image, a folder of images or a glob pattern')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and preds/ are written (default: outputs)')
    parser.add_argument('--device', default=None,
                        help="'cpu', 'cuda' or 'cuda:N' (default: a GPU if there is one)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    images = list_images(args.input)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    inferencer, scope = build_inferencer(args.config, checkpoint, args.device)
    report = infer_images(inferencer, scope, images, args.out_dir)
    print(f'{scope}: {len(report.predictions)} images, drawings and json in {args.out_dir}')
    print_failure_summary(report)
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
