"""The benchmark's worker process: ``python -m benchmarking.workers JOB RESULT_PATH``.

``JOB`` is a JSON object: ``kind`` (a key of :data:`WORKERS`: the CPU sections' workers of
:mod:`.cpu_workers`, the device section's of :mod:`.device_workers`), ``threads``, ``arch``
('13' or an arch dict), ``repeats``, ``warmup`` and the kind's own keys. The worker builds one
model, runs it and writes its result as JSON to ``RESULT_PATH`` (not stdout, where libraries
print). Nothing imports this module: it is only run, so it is loaded once.
"""
import json
import sys
from typing import Callable, Dict, Optional, Sequence

from . import cpu_workers, device_workers

WORKERS: Dict[str, Callable[[dict], dict]] = {**cpu_workers.WORKERS, **device_workers.WORKERS}


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the job given as JSON in ``argv[0]``; write its result as JSON to ``argv[1]``."""
    job_json, result_path = sys.argv[1:] if argv is None else argv
    job = json.loads(job_json)
    import torch

    torch.set_num_threads(job['threads'])
    torch.manual_seed(0)
    import cvt_mm  # noqa: F401  (registers CvT in the task libraries)

    result = WORKERS[job['kind']](job)
    with open(result_path, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main()
