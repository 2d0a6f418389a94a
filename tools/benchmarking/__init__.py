"""CPU benchmark of cvt_mm's CvT against Hugging Face transformers and mmdet's detectors.

``tools/benchmark.py`` is the command line over this package, which lives beside it in tools/,
outside the installed package: it imports cvt_mm as a user does, and ``cvt_mm.testing`` for
the fast tests' arch (``FAST_TEST_ARCH``) and the reference models it shares with the tests.
It is imported as ``benchmarking`` with tools/ on ``sys.path`` (a script's own folder;
pytest.ini's pythonpath).

* :mod:`.sections`: what each section measures (the workers it spawns) and the tables made of
  their results;
* :mod:`.workers`: the worker process (``python -m benchmarking.workers JOB``), running
  one measurement of :mod:`.cpu_workers` (the CPU sections) or :mod:`.device_workers` (the
  device section) on the models of :mod:`.builders`, timed with :mod:`.timing`;
* :mod:`.suite`: settings (full or ``--quick``), spawning workers, timing sections;
* :mod:`.results`: the results as data (docs/benchmarks.json), merged section by section;
* :mod:`.report`: the markdown block, the size plot and console tables rendered from the data.

To add a section: its workers (a function ``worker_<kind>(job) -> dict`` in a WORKERS table),
a ``measure_<name>(suite)`` in :mod:`.sections` entered in its ``MEASURE`` table, and its sizes
in :func:`.suite.settings`; docs/benchmarks.md says what it measures.

Its modules import torch, matplotlib, rich and transformers only inside the functions that
need them (matplotlib, rich and transformers are optional extras).
"""
from .results import load_results, merge_sections, save_results
from .sections import DEVICE_SECTION, SECTIONS
from .suite import Suite, render_only, run_benchmark, settings

__all__ = ['DEVICE_SECTION', 'SECTIONS', 'Suite', 'load_results', 'merge_sections', 'render_only',
           'run_benchmark', 'save_results', 'settings']
