"""Count a CvT model's multiply-accumulates (GMACs), attention matmuls included.

Examples:
    python tools/get_flops.py --arch 13 --shape 224            # classifier, as in the paper
    python tools/get_flops.py --arch w24 --shape 384
    python tools/get_flops.py configs/cvt13_maskrcnn_coco.py --shape 800 1333   # backbone+neck
"""
import argparse

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from rich.console import Console
from rich.table import Table

import cvt_mm  # noqa: F401  (registers CvT)
from cvt_mm.apis import classifier_cfg
from cvt_mm.macs import count_macs
from cvt_mm.tasks import CLASSIFICATION, task_of_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', help='a cvt_mm config (else --arch)')
    parser.add_argument('--arch', default='13', help="'13', '21' or 'w24' (without config)")
    parser.add_argument('--shape', type=int, nargs='+', default=[224], help='H [W]')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--by-module', action='store_true', help='print per-stage counts')
    return parser.parse_args()


def build(args):
    """The model and the part of it that is measured (whole classifier, or backbone+neck)."""
    if args.config is None:
        init_default_scope(CLASSIFICATION.scope)
        model = MODELS.build(classifier_cfg(args.arch, args.num_classes))
        return model, model, f'CvT-{args.arch} classifier'
    cfg = Config.fromfile(args.config)
    cfg.model.pop('init_cfg', None)
    cfg.model.backbone.pop('init_cfg', None)
    init_default_scope(task_of_config(cfg).scope)
    model = MODELS.build(cfg.model)
    if getattr(model, 'with_neck', False):
        return model, torch.nn.Sequential(model.backbone, model.neck), \
            f'{args.config} (backbone + neck)'
    return model, model.backbone, f'{args.config} (backbone)'


def main():
    args = parse_args()
    height, width = (args.shape * 2)[:2]
    _, measured, label = build(args)
    measured.eval()
    with torch.no_grad():
        analyzer = count_macs(measured, (torch.zeros(1, 3, height, width),))
        total = analyzer.total()
    params = sum(p.numel() for p in measured.parameters())
    table = Table(title=f'{label} at {height}x{width}')
    table.add_column('module')
    table.add_column('GMACs', justify='right')
    if args.by_module:
        for name, macs in analyzer.by_module().items():
            if name.count('.') <= 2 and macs:
                table.add_row(name or '(total)', f'{macs / 1e9:.3f}')
    table.add_row('total', f'{total / 1e9:.2f}')
    table.add_row('params (M)', f'{params / 1e6:.2f}')
    Console().print(table)


if __name__ == '__main__':
    main()
