#!/usr/bin/env python
"""Export a classification, segmentation or detection config's model to ONNX.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W]
        [--batch-size N] [--dynamic] [--dynamo] [--opset N] [--verify B,H,W ...]

CHECKPOINT 'none' keeps the random initialisation. The graph takes the preprocessed NCHW batch
and returns the logits (classifier, segmentor) or the backbone + neck features (detector); see
docs/deployment.md. --verify compares onnxruntime with PyTorch on random inputs.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/_cli.py
import _cli  # noqa: E402,F401  (first: quiets known third-party notices)

from cvt_mm.deploy import (  # noqa: E402
    build_task_model,
    export_onnx,
    exportable_module,
    onnx_max_diffs,
)
from cvt_mm.tasks import DETECTION, task_of_scope  # noqa: E402


def batch_shape(text: str):
    batch, height, width = (int(part) for part in text.split(','))
    return batch, height, width


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a cvt_mm model to ONNX.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'),
                        help='height and width of the example input (default: 224 224)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='batch size of the example input (default: 1)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--dynamo', action='store_true',
                        help="torch.export-based exporter instead of TorchScript's")
    parser.add_argument('--opset', type=int,
                        help='ONNX opset (default: 17, with --dynamo 18); with --dynamo, 23 '
                             "writes each block's attention as one Attention node, which "
                             'onnxruntime runs in less memory at detection sizes')
    parser.add_argument('--verify', type=batch_shape, nargs='*', metavar='B,H,W',
                        help='compare onnxruntime with PyTorch on random inputs of these '
                        'shapes (without values: the example shape)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    model, scope = build_task_model(args.config, checkpoint)
    module = exportable_module(model, scope)
    out = export_onnx(module, args.out, tuple(args.shape), args.batch_size, args.dynamic,
                      args.opset, args.dynamo)
    print(f'{scope} model exported to {out}')
    if args.verify is not None:
        shapes = args.verify or [(args.batch_size, *args.shape)]
        # Against the model as built (the segmentor's export copy has other pooling modules).
        reference = module if task_of_scope(scope) is DETECTION else model
        for row in onnx_max_diffs(reference, out, shapes):
            print('batch {batch} {height}x{width}: max |onnxruntime - torch| = '
                  '{max_abs_diff:.2e} (max |output| {max_abs_output:.2e})'.format(**row))


if __name__ == '__main__':
    main()
