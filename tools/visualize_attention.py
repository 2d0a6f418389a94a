#!/usr/bin/env python
"""Draw CvT attention maps of a query (or of the cls token) over an image.

    python tools/visualize_attention.py CONFIG CHECKPOINT IMAGE [--stage S --block B --head H]
        [--query X Y | --cls] [--rollout] [--size H W] [--out FILE]

One panel per head: the attention weights of the query (image pixels X, Y; default the centre)
or of the cls token (last stage only) over the block's strided key map. --rollout follows the
query back through the stage's blocks instead (attention rollout). Only the chosen query's
weights are computed, so it runs at detection resolution. CHECKPOINT 'none': random weights.
"""
import argparse
import resource

from _cli import KnownLibraryNotices  # noqa: F401  (first: quiets known third-party notices)

from cvt_mm.deploy import build_task_model
from cvt_mm.visualization import read_image, visualize_attention


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw CvT attention maps over an image.')
    parser.add_argument('config', help='config file (classification, detection or '
                        'segmentation: its backbone is used)')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('image', help='image file')
    parser.add_argument('--stage', type=int, default=-1, help='stage, 0-based (default: last)')
    parser.add_argument('--block', type=int, default=-1,
                        help='block in the stage, 0-based (default: last)')
    parser.add_argument('--head', type=int, help='draw only this head (default: all)')
    query = parser.add_mutually_exclusive_group()
    query.add_argument('--query', type=float, nargs=2, metavar=('X', 'Y'),
                       help='query position in image pixels (default: the centre)')
    query.add_argument('--cls', action='store_true',
                       help="the cls token's attention (last stage only)")
    parser.add_argument('--rollout', action='store_true',
                        help="attention rollout over the stage's blocks up to --block")
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='resize the image to H x W first (default: keep its size)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument('--out', default='attention.png', help='figure file (default: '
                        'attention.png)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    model, _ = build_task_model(args.config, checkpoint, args.device)
    image = read_image(args.image)
    info = visualize_attention(model.backbone, image, model.data_preprocessor, args.out,
                               args.stage, args.block, args.head, args.query, args.cls,
                               args.rollout, args.size)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print('stage {stage} block {block}: {input_size[0]}x{input_size[1]} input, '
          '{token_map[1]}x{token_map[0]} tokens, {key_map[1]}x{key_map[0]} keys -> '
          '{out_file}'.format(**info))
    print(f'peak memory (ru_maxrss): {peak_mib:.0f} MiB')


if __name__ == '__main__':
    main()
