"""Running the benchmark: a worker subprocess per measurement, sections timed and merged into
the results document, the markdown and the plot rendered from it.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from . import report, results
from .sections import DEVICE_SECTION, MEASURE, SECTIONS

# The folder holding this package (tools/): workers run from it, so that
# ``python -m benchmarking.workers`` finds the package from any current directory.
BENCHMARK_PARENT = Path(__file__).resolve().parents[1]


def worker_env(threads: int) -> dict:
    """The environment of a worker process: ``threads`` OMP and MKL threads, and the folder of
    the cvt_mm this process imports ahead of ``PYTHONPATH``, so that the worker measures that
    same cvt_mm and not another copy installed in the environment."""
    spec = importlib.util.find_spec('cvt_mm')
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError('the benchmark measures cvt_mm, which is not importable: '
                                  'install it (pip install -e .) or put the checkout on '
                                  'PYTHONPATH')
    cvt_mm_parent = str(Path(spec.origin).resolve().parents[1])
    python_path = os.pathsep.join(
        [cvt_mm_parent] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else []))
    return dict(os.environ, PYTHONPATH=python_path, OMP_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads), PYTHONWARNINGS='ignore')


def settings(quick: bool, repeats: Optional[int] = None) -> dict:
    """Sizes and repeats of a full run, or of a ``--quick`` smoke test (tiny model and sizes).

    Args:
        quick (bool): The smoke-test settings.
        repeats (int, optional): Timed repeats of every measurement instead of the defaults
            (5 and 10 for classification; 1 in quick). Defaults to None.
    """
    if quick:
        from cvt_mm.testing import FAST_TEST_ARCH

        cfg = dict(arch=FAST_TEST_ARCH, cls_batch=2, cls_size=64, dense_long_sides=[160],
                   dense_size=(96, 160), train_size=(96, 160), det_size=(128, 224),
                   det_train_size=(64, 96), det_train_boxes=3, det_train_repeats=1,
                   det_train_rounds=1, det_train_kernel_repeats=1, train_rounds=1,
                   compile_dense_size=(64, 96), compile_without_freezing=False,
                   det_thresholds=('config',), repeats=1, cls_repeats=1, warmup=1,
                   device_sizes=[32, 64], device_batch=2, device_dense_size=(64, 96),
                   device_dense_batch=1, device_check_size=(64, 96), device_repeats=1,
                   device_warmup=1)
    else:
        cfg = dict(arch='13', cls_batch=16, cls_size=224,
                   dense_long_sides=[224, 448, 640, 896, 1120, 1333], dense_size=(800, 1333),
                   train_size=(800, 1333), det_size=(800, 1333), compile_dense_size=(800, 1333),
                   det_train_size=(800, 1216), det_train_boxes=7, det_train_repeats=1,
                   det_train_rounds=3, det_train_kernel_repeats=3, train_rounds=3,
                   compile_without_freezing=True, det_thresholds=('config', 'thr0'), repeats=5,
                   cls_repeats=10, warmup=1, device_sizes=[224, 448, 896], device_batch=32,
                   device_dense_size=(800, 1333), device_dense_batch=2,
                   device_check_size=(320, 480), device_repeats=10, device_warmup=3)
    cfg['device_dtypes'] = ('fp32', 'bf16', 'fp16')
    if repeats:
        cfg['repeats'] = cfg['cls_repeats'] = repeats
    return cfg


class Suite:
    """Measures sections, each worker in a fresh subprocess.

    Args:
        quick (bool): The ``--quick`` smoke-test settings. Defaults to False.
        threads (int): torch, OMP and MKL threads of every worker. Defaults to 2.
        repeats (int, optional): Timed repeats instead of the defaults of :func:`settings`.
        device (str): Where the device section runs: 'cuda' (the current CUDA device) or
            'cpu'. The other sections always measure the CPU. Defaults to 'cpu'.
    """

    def __init__(self, quick: bool = False, threads: int = 2, repeats: Optional[int] = None,
                 device: str = 'cpu'):
        self.quick = quick
        self.threads = threads
        self.cfg = settings(quick, repeats)
        self.device = device
        self.failures = 0

    @property
    def device_name(self) -> str:
        """The device section's device in words: the GPU's name, or 'CPU'."""
        if self.device == 'cpu':
            return 'CPU'
        import torch

        return torch.cuda.get_device_name(self.device)

    @property
    def arch_name(self) -> str:
        """'13' or, for the smoke test's dict, 'tiny'."""
        return self.cfg['arch'] if isinstance(self.cfg['arch'], str) else 'tiny'

    def spawn(self, kind: str, **job) -> Optional[dict]:
        """Run one worker (:mod:`.workers`) in a subprocess; its result, or None if it failed.

        ``job`` overrides the defaults (threads, arch, repeats, warm-up) and adds the kind's
        own keys.
        """
        job = {**dict(kind=kind, threads=self.threads, arch=self.cfg['arch'],
                      repeats=self.cfg['repeats'], warmup=self.cfg['warmup']), **job}
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / 'result.json'
            proc = subprocess.run(
                [sys.executable, '-m', 'benchmarking.workers', json.dumps(job),
                 str(result_path)],
                capture_output=True, text=True, env=worker_env(self.threads),
                cwd=BENCHMARK_PARENT)
            if proc.returncode == 0 and result_path.exists():
                return json.loads(result_path.read_text())
        self.failures += 1
        print(f'worker {kind} {job} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}',
              file=sys.stderr)
        return None

    def measure(self, name: str) -> dict:
        """One section: its tables and raw results, when and under what load it ran."""
        env = results.environment(self.threads,
                                  self.device if name == DEVICE_SECTION else 'cpu')
        started = time.strftime('%Y-%m-%d %H:%M')
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        section = MEASURE[name](self)
        return dict(measured=started, minutes=(time.perf_counter() - start) / 60,
                    load_average=[load_before, os.getloadavg()[0]], environment=env,
                    **section)

    def run(self, sections: Sequence[str]) -> Dict[str, dict]:
        """Measure ``sections`` (in the order of :data:`~.sections.MEASURE`, the device section
        last); a section that produced no table (all its workers failed) is left out. The
        device section is stored as ``device-<device>``."""
        measured = {}
        for name in MEASURE:
            if name in sections:
                section = self.measure(name)
                if section['tables']:
                    key = f'{name}-{self.device}' if name == DEVICE_SECTION else name
                    measured[key] = section
        return measured


def render(data: dict, data_path: Path, out: Path, plot: Path) -> bool:
    """Render a results document into ``out``'s results block, and its size plot.

    The plot is redrawn when the dense section has its per-size data; otherwise (a dense
    section stored without it) ``plot`` is left as it is, and still linked when it exists.

    Args:
        data (dict): The results document.
        data_path (Path): Where it is stored, as the block's header names it.
        out (Path): The markdown file.
        plot (Path): The size plot's PNG.

    Returns:
        bool: Whether the plot was drawn.
    """
    dense = data['sections'].get('dense')
    drawn = bool(dense) and report.plot_sizes(dense, plot)
    link = None
    if dense and Path(plot).exists():
        link = relative(plot, Path(out).parent)
    report.update_markdown(out, report.render_results(
        data, plot_link=link, source=relative(data_path, Path(out).parent)))
    return drawn


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` where possible (a link from a file in ``start``)."""
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive on Windows
        return str(path)


def run_benchmark(sections: Sequence[str] = SECTIONS, quick: bool = False, threads: int = 2,
                  repeats: Optional[int] = None, out: Path = Path('benchmarks.md'),
                  data_path: Optional[Path] = None, plot: Optional[Path] = None,
                  raw_path: Optional[Path] = None, device: str = 'cpu') -> int:
    """Measure ``sections``, merge them into the results document and render it.

    Args:
        sections (sequence of str): Names from :data:`SECTIONS`. Defaults to all.
        quick (bool): Tiny model and sizes, one repeat: a smoke test. Defaults to False.
        threads (int): torch, OMP and MKL threads. Defaults to 2.
        repeats (int, optional): Timed repeats instead of the defaults.
        out (Path): The markdown file whose results block is rendered.
            Defaults to 'benchmarks.md'.
        data_path (Path, optional): The results document; the other sections already in it
            are kept. Defaults to ``out`` with the suffix '.json'.
        plot (Path, optional): The size plot. Defaults to 'benchmark_sizes.png' next to
            ``out``.
        raw_path (Path, optional): Also write the workers' raw results of this run here.
        device (str): The device section's device, 'cuda' or 'cpu'. Defaults to 'cpu'.

    Returns:
        int: The number of workers that failed (their rows are missing).
    """
    out = Path(out)
    data_path = Path(data_path) if data_path else out.with_suffix('.json')
    plot = Path(plot) if plot else out.parent / 'benchmark_sizes.png'
    suite = Suite(quick, threads, repeats, device)
    measured = suite.run(sections)
    if raw_path:
        Path(raw_path).parent.mkdir(parents=True, exist_ok=True)
        Path(raw_path).write_text(json.dumps(
            {name: section.get('raw') for name, section in measured.items()}, indent=1,
            default=str))
    for section in measured.values():
        section.pop('raw', None)  # in --raw only: the data file keeps the tables
    report.print_tables(measured)
    data = results.merge_sections(results.load_results(data_path), measured, quick, threads)
    results.save_results(data_path, data)
    render(data, data_path, out, plot)
    print(f'wrote {data_path} and {out}')
    return suite.failures


def render_only(data_path: Path, out: Path, plot: Optional[Path] = None) -> None:
    """Re-render ``out``'s results block (and the size plot, where its data is kept) from the
    results document at ``data_path``, measuring nothing."""
    data = results.load_results(data_path)
    if data is None:
        raise FileNotFoundError(f'no results at {data_path}')
    plot = Path(plot) if plot else Path(out).parent / 'benchmark_sizes.png'
    drawn = render(data, Path(data_path), Path(out), plot)
    print(f'rendered {data_path} into {out}; ' + (
        f'drew {plot}' if drawn else f'{plot} left as it is (no per-size data)'))
