#!/usr/bin/env python
"""Run a detection (mmdet), segmentation (mmseg) or classification (mmpretrain) model on images.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir DIR] [--device cpu|cuda]
        [--batch-size N] [--score-thr THR]

INPUT is an image, a folder (its images, recursively) or a quoted glob ('data/*.jpg'). The task
comes from the config's default_scope; the library's own inferencer (DetInferencer,
MMSegInferencer, ImageClassificationInferencer) runs the images, --batch-size at a time, and DIR
receives the drawings (vis/) and the predictions as json (preds/), each at the image's path
relative to INPUT (a folder), to the folder of INPUT (a file) or to the folders of a glob before
its first wildcard ('data/**/*.jpg': data/), so that a/img.jpg and b/img.jpg keep apart.
Detection keeps, in drawings and json alike, the detections scoring above --score-thr. An
unreadable image is reported on one line and skipped; the exit status is then 1. CHECKPOINT
'none' keeps random weights.
"""
import argparse
import sys

from _cli import KnownLibraryNotices  # noqa: F401  (first: quiets known third-party notices)

from mmengine.config import Config

from cvt_mm.apis import build_inferencer, infer_images, input_root, list_images
from cvt_mm.apis.inference import DEFAULT_SCORE_THR, print_failure_summary
from cvt_mm.tasks import DETECTION, task_of_config


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be 1 or more, not {value}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Inference with an mmdet, mmseg or mmpretrain config on images.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument(
        'input', help='an image, a folder of images (recursively) or a quoted glob pattern; '
        'the outputs keep each image\'s path relative to the folder, to the file\'s folder, or '
        "to the glob's folders before its first wildcard ('data/**/*.jpg': data/)")
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and preds/ are written (default: outputs)')
    parser.add_argument('--device', default=None,
                        help="'cpu', 'cuda' or 'cuda:N' (default: a GPU if there is one)")
    parser.add_argument('--batch-size', type=positive_int, default=1,
                        help='images per forward pass, the inferencer\'s batch_size (default: 1)')
    parser.add_argument(
        '--score-thr', type=float, default=None,
        help='detection: draw and save the detections scoring above it (default: '
        f'{DEFAULT_SCORE_THR}, DetInferencer\'s; 0 keeps all)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        images = list_images(args.input)
    except FileNotFoundError as error:
        raise SystemExit(f'error: {error}') from error
    task = task_of_config(Config.fromfile(args.config))
    if args.score_thr is not None and task is not DETECTION:
        raise SystemExit(f'error: --score-thr applies to detection configs ({DETECTION.scope}); '
                         f'{args.config} is an {task.scope} config')
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    inferencer, scope = build_inferencer(args.config, checkpoint, args.device)
    try:
        report = infer_images(inferencer, scope, images, args.out_dir,
                              root=input_root(args.input), score_thr=args.score_thr,
                              batch_size=args.batch_size)
    except ValueError as error:  # two images whose outputs would share a name
        raise SystemExit(f'error: {error}') from error
    print(f'{scope}: {len(report.predictions)} images, drawings and json in {args.out_dir}')
    print_failure_summary(report)
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
