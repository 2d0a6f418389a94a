"""CPU benchmark of cvt_mm's CvT against Hugging Face transformers and mmdet's detectors.

``tools/benchmark.py`` is the command line over this package:

* :mod:`.workers`: the measurements, one per subprocess
  (``python -m cvt_mm.benchmark.workers JOB``), and the models they build;
* :mod:`.sections`: what each section measures and the tables made of it;
* :mod:`.runner`: settings (full or ``--quick``), spawning workers, timing sections;
* :mod:`.results`: the results as data (docs/benchmarks.json), merged section by section;
* :mod:`.report`: the markdown block, the size plot and console tables rendered from the data.

Its modules import torch, matplotlib, rich and transformers only inside the functions that
need them (matplotlib, rich and transformers are optional extras).
"""
from .results import load_results, merge_sections, save_results
from .runner import Suite, render_only, run_benchmark, settings
from .sections import DEVICE_SECTION, SECTIONS

__all__ = ['DEVICE_SECTION', 'SECTIONS', 'Suite', 'load_results', 'merge_sections', 'render_only',
           'run_benchmark', 'save_results', 'settings']
