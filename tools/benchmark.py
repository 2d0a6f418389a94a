"""CPU benchmark of cvt_mm's CvT against Hugging Face transformers and mmdet's detectors.

Sections (``--sections``, default all of them, in this order):

  cls      CvT-13 classifier throughput at 224x224 batch 16: cvt_mm (eager, after
           ``switch_to_deploy()``, eager with the MLP in one chunk) vs HF, GFLOP/s against the
           CPU's matmul peak
  compile  ``torch.compile`` (inductor) of the backbone vs eager
  dense    backbone latency and peak RSS against input size up to 800x1333, vs HF ``CvtModel``
  train    one training step at 800x1333 (QuickGELU), with and without ``with_cp``, without
           the CPU attention's query chunks and without the CPU kernels
  det      Mask R-CNN per 800x1333 image: CvT-13, its fast config, mmdet's Swin-T and R-50
  det_train  one Mask R-CNN training step per 800x1216 image, the same four (CvT with_cp off
           and on), with the backward profiled per stage and per operator and CvT's
           attention kernels timed call by call against the matmul peak
  profile  torch.profiler's top operators of cvt_mm and HF

With ``--device cuda`` (or ``cpu``) the default is the device section instead, on that device:
  device   classifier throughput under fp32 / bf16 / fp16 autocast vs HF and timm's Swin-T, the
           backbones at 800x1333 with peak memory, the det_train step with peak memory, and
           checks of cvt_mm on the device against its CPU output (a failed
           check makes the exit status 1); stored as ``device-cuda`` (``device-cpu``)

    python tools/benchmark.py                          # everything (~40 min on 2 cores)
    python tools/benchmark.py --sections cls dense     # some sections; the others are kept
    python tools/benchmark.py --render-only            # re-render the docs from the data
    python tools/benchmark.py --quick                  # tiny models and sizes, a smoke test
    python tools/benchmark.py --device cuda            # the GPU section
    python tools/benchmark.py --device cpu --quick     # the same on the CPU

The results are data, ``--data`` (default docs/benchmarks.json); the tables between the
markers ``<!-- results:start -->`` and ``<!-- results:end -->`` of ``--out`` (default
docs/benchmarks.md; the text around them is left alone) and the ``--plot`` are rendered from
it. ``--quick`` writes to a temporary directory unless ``--out`` is given, never to docs/.
What each section measures and how: docs/benchmarks.md; the code: tools/benchmarking/.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import _cli  # noqa: F401  (before the libraries: quiets their start-up notices)

from benchmarking import DEVICE_SECTION, SECTIONS, render_only, run_benchmark

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
