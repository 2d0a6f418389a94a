"""Timing and memory of the benchmark's workers: wall times, this process's resident set
size, the CPU's matmul peak; on a device, times between synchronisations and its peak memory.

torch is imported inside the functions, so importing this module is free.
"""
import os
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional


def rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryTracker:
    """A worker's RSS once its model is built (the baseline) and at its peak.

    Call :meth:`built` when the model and inputs exist, and :meth:`summary` right after the
    measured runs (before any bookkeeping that allocates).
    """

    def __init__(self):
        self.built_mb: Optional[float] = None

    def built(self) -> None:
        """Record the baseline: libraries imported, model and inputs built."""
        self.built_mb = rss_mb()

    def summary(self) -> Dict[str, float]:
        """``rss_built_mb`` and ``peak_rss_mb`` of this process."""
        return dict(rss_built_mb=self.built_mb, peak_rss_mb=peak_rss_mb())


def timed(fn: Callable, repeats: int, warmup: int) -> List[float]:
    """Wall times in seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(repeats: int = 10) -> float:
    """fp32 GFLOP/s of a 2048x2048 matmul (median of ``repeats``), this CPU's practical peak."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = timed(lambda: torch.mm(a, b), repeats, warmup=2)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def torch_dtype(name: str):
    import torch

    return dict(bf16=torch.bfloat16, fp16=torch.float16).get(name)


def autocast(device, dtype: str):
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context for 'fp32'."""
    import torch

    return torch.autocast(device.type, dtype=torch_dtype(dtype), enabled=dtype != 'fp32')


def synchronize(device) -> None:
    import torch

    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def device_timed(fn: Callable, device, repeats: int, warmup: int) -> List[float]:
    """Wall times of ``repeats`` calls of ``fn`` after ``warmup``, the device's queue drained
    before and after each."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def reset_peak_memory(device) -> None:
    import torch

    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device) -> Optional[float]:
    """Peak memory allocated on a CUDA device since the last reset, in MiB (None on CPU,
    where the process-wide peak RSS of the other sections is the measure)."""
    import torch

    if device.type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or 'out of memory' in str(error)


