"""A benchmark suite whose workers run in the test's process (not a test module)."""
from types import SimpleNamespace

from benchmarking.workers import WORKERS


def in_process_suite(cfg: dict) -> SimpleNamespace:
    """The part of runner.Suite a section uses, its workers called here instead of spawned."""
    jobs = []

    def spawn(kind, **job):
        job = {**dict(threads=1, arch=cfg['arch'], repeats=cfg['repeats'],
                      warmup=cfg['warmup']), **job}
        jobs.append(job)
        return WORKERS[kind](job)

    return SimpleNamespace(cfg=cfg, threads=1, spawn=spawn, jobs=jobs, device_name='CPU',
                           arch_name='tiny')
