"""CPU benchmark of cvt_mm's CvT against Hugging Face transformers' and mmdet's detectors.

Sections (``--sections``, default all of them, in this order):

  cls      CvT-13 classification at 224x224, batch 16, eval: throughput of cvt_mm (eager and
           ``switch_to_deploy()``) and HF ``CvtForImageClassification`` on the same weights,
           their max abs logit difference, achieved GFLOP/s (2 x MACs / time) as a fraction of
           this CPU's fp32 matmul peak (2048x2048 matmul, measured in the same process).
  compile  ``torch.compile`` (inductor, freezing) of the cvt_mm backbone: compile time and
           steady-state speed at 224 batch 16 and at 800x1333.
  dense    CvT-13 backbone forward on one image, sizes from 224 to 1333 on the long side
           (aspect 800:1333): latency and peak RSS of cvt_mm vs HF ``CvtModel``; 800x1333 is the
           headline. Plotted to ``--plot``.
  train    one training step (forward + backward) of the backbone at 800x1333: time and peak
           RSS, with and without ``with_cp``.
  det      Mask R-CNN inference per 800x1333 image (mmdet test pipeline, random weights):
           CvT-13 vs mmdet's Swin-T and R-50, with backbone+neck GMACs and time.
  profile  torch.profiler's top operators of cvt_mm and HF at 224 batch 16 and at 800x1333.

With ``--device cuda`` (or ``cpu``) the default is the device section instead, on that device:
  device   CvT-13 classifier throughput (cvt_mm under fp32 / bf16 / fp16 autocast) vs HF
           ``CvtForImageClassification`` and timm's Swin-T at 224/448/896, batch 32; the
           backbones (CvT-13, its fast config, mmdet's Swin-T, HF ``CvtModel``) at 800x1333:
           forward and one training step with peak GPU memory; checks that cvt_mm on the
           device matches its CPU output (fp32 within 1e-4, bf16 5e-2, fp16 1e-2 of the
           output scale) and that AMP training steps give finite gradients. A failed check
           makes the exit status 1. Stored as the section ``device-cuda`` (``device-cpu``).

Every measurement runs in a fresh subprocess (``python -m cvt_mm.benchmark.workers``) that
builds one model and runs it, so peak RSS is that model's alone. Threads: ``--threads`` for
torch, OMP and MKL alike. The load average before and after each section is recorded, since a
shared CPU inflates every number. The logic is in ``cvt_mm.benchmark``.

    python tools/benchmark.py                          # everything (~15 min on 2 cores)
    python tools/benchmark.py --sections cls dense     # some sections; the others are kept
    python tools/benchmark.py --render-only            # re-render the docs from the data
    python tools/benchmark.py --quick                  # tiny models and sizes, a smoke test
    python tools/benchmark.py --device cuda            # the GPU section (~5 min on a GPU)
    python tools/benchmark.py --device cpu --quick     # the same on the CPU, as CI runs it

The results are data, ``--data`` (default docs/benchmarks.json); the tables between the
markers ``<!-- results:start -->`` and ``<!-- results:end -->`` of ``--out`` (default
docs/benchmarks.md; the text around them is left alone) and the ``--plot`` are rendered from
it. ``--quick`` writes to a temporary directory unless ``--out`` is given, never to docs/.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

from cvt_mm.benchmark import DEVICE_SECTION, SECTIONS, render_only, run_benchmark

REPO_ROOT = Path(__file__).resolve().parents[1]

DOCS = REPO_ROOT / 'docs'
QUICK_DIR = Path(tempfile.gettempdir()) / 'cvt_mm_benchmark_quick'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sections', nargs='+', choices=SECTIONS + (DEVICE_SECTION,),
                        help=f'default: all of {", ".join(SECTIONS)}; with --device, '
                             f'{DEVICE_SECTION}')
    parser.add_argument('--device', choices=('cuda', 'cpu'),
                        help=f'run the {DEVICE_SECTION} section on this device')
    parser.add_argument('--quick', action='store_true',
                        help='tiny model and sizes, 1 repeat: a smoke test (default --out: '
                             f'{QUICK_DIR / "benchmarks.md"})')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, help='timed repeats (default 5, quick 1)')
    parser.add_argument('--out', type=Path,
                        help='markdown file of the results block (default docs/benchmarks.md)')
    parser.add_argument('--data', type=Path,
                        help='the results as data, updated section by section (default: --out '
                             'with the suffix .json, docs/benchmarks.json)')
    parser.add_argument('--plot', type=Path,
                        help='PNG of time and memory against input size '
                             '(default: benchmark_sizes.png next to --out)')
    parser.add_argument('--json', type=Path,
                        help="also write this run's raw measurements here")
    parser.add_argument('--render-only', action='store_true',
                        help='measure nothing: re-render --out and --plot from --data')
    args = parser.parse_args(argv)
    if args.sections is None:
        args.sections = [DEVICE_SECTION] if args.device else list(SECTIONS)
    if DEVICE_SECTION in args.sections and args.device is None:
        args.device = 'cpu'
    if args.device == 'cuda' and not args.render_only:
        import torch

        if not torch.cuda.is_available():
            parser.error('--device cuda: torch.cuda.is_available() is False on this machine')
    if args.out is None:
        args.out = (QUICK_DIR if args.quick and not args.render_only else DOCS) / 'benchmarks.md'
    if args.data is None:
        args.data = args.out.with_suffix('.json')
    if args.quick and not args.render_only and (
            args.data.resolve() == (DOCS / 'benchmarks.json').resolve()):
        parser.error('--quick would replace the measured results in docs/: give another --out')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        render_only(args.data, args.out, args.plot)
        return 0
    failures = run_benchmark(args.sections, quick=args.quick, threads=args.threads,
                             repeats=args.repeats, out=args.out, data_path=args.data,
                             plot=args.plot, raw_path=args.json, device=args.device or 'cpu')
    if failures:
        print(f'{failures} worker(s) failed: their rows are missing', file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
