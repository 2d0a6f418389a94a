"""The benchmark's results as data: the JSON file that docs/benchmarks.md is rendered from.

Layout (``format`` 1)::

    {
      "format": 1,
      "quick": false,            # a --quick smoke run (tiny model and sizes)
      "threads": 2,              # torch / OMP / MKL threads of every section
      "sections": {              # in SECTIONS order; each re-measured on its own
        "<name>": {
          "measured": "2026-11-24 05:01",   # local time the section started
          "minutes": 0.81,                  # its wall time
          "load_average": [1.31, 1.70],     # 1-minute load average before and after
          "environment": {"cpu": ..., "logical_cores": ..., "cpu_capability": ...,
                          "threads": ..., "torch": ..., "transformers": ..., "python": ...},
          "tables": [{"title": ..., "columns": [...], "rows": [[cell, ...]], "notes": [...]}],
          "per_size": {...},     # dense only: the raw data the size plot is drawn from
          "provenance": "..."    # optional, where the numbers came from if not a run
        }
      }
    }

``cpu_capability`` is ``torch.backends.cpu.get_cpu_capability()`` (the vector ISA torch's
kernels were dispatched to), 'unknown' where it was not recorded. ``per_size`` is
``{"arch": ..., "impls": {"cvt_mm" | "hf": [{"input": [h, w], "times": [...],
"peak_rss_mb": ..., "rss_built_mb": ...}]}}``.
"""
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

from .sections import SECTIONS

FORMAT = 1
UNKNOWN = 'unknown'


def empty_results(quick: bool = False, threads: int = 2) -> dict:
    """A results document without sections."""
    return dict(format=FORMAT, quick=quick, threads=threads, sections={})


def load_results(path: Path) -> Optional[dict]:
    """The results document at ``path``, or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get('format') != FORMAT:
        raise ValueError(f'{path}: results format {data.get("format")!r}, expected {FORMAT}')
    return data


def save_results(path: Path, data: dict) -> None:
    """Write the results document (one value per line, so re-measurements diff well)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')


def merge_sections(previous: Optional[dict], measured: Dict[str, dict], quick: bool,
                   threads: int) -> dict:
    """The results of this run's ``measured`` sections plus the other sections of
    ``previous``, so that sections can be re-measured one at a time on a busy machine.

    ``previous``'s sections are kept only if it has the same ``quick`` and ``threads``: one
    document never mixes smoke-test numbers or thread counts.

    Args:
        previous (dict | None): The results document so far, if any.
        measured (dict): Section name -> section, as measured now.
        quick (bool): Whether this run is a ``--quick`` smoke test.
        threads (int): This run's thread count.

    Returns:
        dict: A new results document, sections in :data:`SECTIONS` order.
    """
    sections = {}
    if previous and previous.get('quick') == quick and previous.get('threads') == threads:
        sections.update(previous.get('sections', {}))
    elif previous and previous.get('sections'):
        print(f"dropping the previous results (quick={previous.get('quick')}, "
              f"threads={previous.get('threads')}): this run has quick={quick}, "
              f'threads={threads}', file=sys.stderr)
    sections.update(measured)
    data = empty_results(quick, threads)
    # The CPU sections in SECTIONS order, then the device sections ('device-cuda', ...).
    order = [name for name in SECTIONS if name in sections] + sorted(
        name for name in sections if name not in SECTIONS)
    data['sections'] = {name: sections[name] for name in order}
    return data


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or UNKNOWN


def package_version(name: str) -> str:
    """An installed distribution's version, 'not installed' without it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return 'not installed'


def environment(threads: int, device: str = 'cpu') -> dict:
    """What the numbers depend on besides the code: CPU, torch's kernel ISA, versions; for a
    CUDA ``device`` also the GPU, CUDA and cuDNN versions and timm's."""
    import torch

    env = dict(cpu=cpu_model(), logical_cores=os.cpu_count(),
               cpu_capability=torch.backends.cpu.get_cpu_capability(), threads=threads,
               torch=torch.__version__, transformers=package_version('transformers'),
               python=platform.python_version())
    if device != 'cpu':
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), timm=package_version('timm'))
    return env
