"""The device section's measurements (``tools/benchmark.py --device cuda``; ``--device cpu``
runs the same jobs on the CPU): classification throughput under autocast dtypes against HF CvT
and timm's Swin-T, the backbones at detection size with their peak memory, and the numerical
checks of cvt_mm on the device against its own CPU output.

Each job is a worker run by :mod:`.workers` with the extra key ``device``. On CUDA, times are
taken between ``torch.cuda.synchronize()`` calls and memory is
``torch.cuda.max_memory_allocated()``, reset before each measurement.
"""
from functools import partial
from typing import Callable, Dict, List, Sequence, Tuple

from .builders import build_classifier, build_dense_backbone
from .timing import autocast, device_timed, is_out_of_memory, peak_memory_mb, reset_peak_memory

# Tolerances of the device-vs-CPU checks, as max |diff| / max(1, max |CPU fp32 output|).
# fp32: the same arithmetic in another order. bf16 keeps 8 mantissa bits (relative rounding
# 2^-9 per operation) and fp16 11; through 16 residual blocks the errors add up to a few
# percent and a few tenths of a percent of the output scale respectively.
CHECK_TOLERANCES = dict(fp32=1e-4, bf16=5e-2, fp16=1e-2)


def time_eval(run: Callable, images, device, dtype: str, repeats: int,
              warmup: int) -> List[float]:
    """Times of ``run(images)`` in inference mode under autocast to ``dtype``."""
    import torch

    with torch.inference_mode(), autocast(device, dtype):
        return device_timed(partial(run, images), device, repeats, warmup)


def time_train_step(model, run: Callable, images, device, dtype: str, repeats: int,
                    warmup: int) -> List[float]:
    """Times of a training step: forward under autocast to ``dtype``, the sum of the maps'
    mean squares, backward (scaled by a GradScaler for fp16)."""
    import torch

    scaler = torch.amp.GradScaler(device.type, enabled=dtype == 'fp16')

    def step():
        with autocast(device, dtype):
            loss = sum(o.float().pow(2).mean() for o in run(images))
        scaler.scale(loss).backward()
        model.zero_grad(set_to_none=True)

    return device_timed(step, device, repeats, warmup)


def worker_throughput(job: dict) -> dict:
    """Eval throughput of one classifier impl at each size and autocast dtype.

    Job keys: ``device``, ``impl`` (see :func:`.builders.build_classifier`), ``sizes``, ``dtypes``,
    ``batch``, ``repeats``, ``warmup``, ``arch``. A batch that does not fit in memory is
    halved until one does; the result records the batch measured.
    """
    import torch

    device = torch.device(job['device'])
    results: Dict[str, dict] = {}
    for size in job['sizes']:
        model, run = build_classifier(job['impl'], job['arch'], size)
        model.to(device)
        results[str(size)] = per_dtype = {}
        for dtype in job['dtypes']:
            batch = job['batch']
            while dtype not in per_dtype:
                try:
                    images = torch.randn(batch, 3, size, size, device=device)
                    times = time_eval(run, images, device, dtype, job['repeats'],
                                      job['warmup'])
                    per_dtype[dtype] = dict(batch=batch, times=times)
                except RuntimeError as error:
                    if not is_out_of_memory(error) or batch == 1:
                        per_dtype[dtype] = dict(batch=batch, error=str(error)[:200])
                    images = None
                    reset_peak_memory(device)
                    batch //= 2
        model.cpu()
        reset_peak_memory(device)
    return dict(results=results)


def worker_dense(job: dict) -> dict:
    """One backbone at detection size: eval forward and one training step (forward +
    backward, train mode) under each autocast dtype, times and peak device memory.

    Job keys: ``device``, ``impl`` (see :func:`.builders.build_dense_backbone`), ``size`` ([h, w]),
    ``batch``, ``dtypes``, ``repeats``, ``warmup``, ``arch``.
    """
    import torch

    device = torch.device(job['device'])
    model, run = build_dense_backbone(job['impl'], job['arch'], job['size'])
    model.to(device)
    images = torch.randn(job['batch'], 3, *job['size'], device=device)
    timing = dict(repeats=job['repeats'], warmup=job['warmup'])
    results = {}
    for dtype in job['dtypes']:
        results[dtype] = entry = {}
        for mode in ('forward', 'train'):
            model.train(mode == 'train')
            reset_peak_memory(device)
            try:
                times = (time_eval(run, images, device, dtype, **timing) if mode == 'forward'
                         else time_train_step(model, run, images, device, dtype, **timing))
                entry[mode] = dict(times=times, peak_memory_mb=peak_memory_mb(device))
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                entry[mode] = dict(error='out of memory')
    return dict(results=results)


def max_relative_diff(outputs: Sequence, references: Sequence) -> Tuple[float, float]:
    """max |output - reference| over all tensors, and that over max(1, max |reference|)."""
    diff = max((o.float().cpu() - r).abs().max().item() for o, r in zip(outputs, references))
    scale = max(1.0, max(r.abs().max().item() for r in references))
    return diff, diff / scale


def worker_checks(job: dict) -> dict:
    """cvt_mm on the device against its CPU fp32 output, and AMP training steps.

    For each dtype: the classifier's logits at ``cls_size`` (batch 2) and the backbone's three
    stage maps at ``dense_size`` (batch 1), on the device under autocast vs CPU fp32 with the
    same weights and inputs (TF32 off for the fp32 comparison). Then, for each reduced dtype, a
    training step of the classifier under autocast (fp16 with a GradScaler): the loss and
    every gradient finite, and some gradient non-zero.

    Job keys: ``device``, ``dtypes``, ``cls_size``, ``dense_size`` ([h, w]), ``arch``.
    """
    import torch
    from mmpretrain.structures import DataSample

    from cvt_mm.models import CvT
    from cvt_mm.testing import randomize_norms
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(job['device'])
    # Random norms and BN statistics: fresh ones are identities in eval mode.
    classifier, logits = build_classifier('cvt_mm', job['arch'], job['cls_size'])
    randomize_norms(classifier, seed=0)
    backbone = CvT(arch=job['arch'], out_type='featmap', out_indices=(0, 1, 2))
    backbone.init_weights()
    randomize_norms(backbone.eval(), seed=1)
    generator = torch.Generator().manual_seed(0)
    cls_images = torch.randn(2, 3, job['cls_size'], job['cls_size'], generator=generator)
    dense_images = torch.randn(1, 3, *job['dense_size'], generator=generator)
    with torch.inference_mode():
        references = dict(logits=[logits(cls_images)], maps=list(backbone(dense_images)))
    classifier.to(device)
    backbone.to(device)
    checks = []
    for dtype in job['dtypes']:
        tolerance = CHECK_TOLERANCES[dtype]
        with torch.inference_mode(), autocast(device, dtype):
            outputs = dict(logits=[logits(cls_images.to(device))],
                           maps=list(backbone(dense_images.to(device))))
        for name in ('logits', 'maps'):
            diff, relative = max_relative_diff(outputs[name], references[name])
            checks.append(dict(check=f'{name} {dtype} vs CPU fp32', value=relative,
                               abs_diff=diff, tolerance=tolerance,
                               passed=bool(relative <= tolerance)))
    classifier.train()
    labels = torch.arange(4) % classifier.head.num_classes
    images = torch.randn(4, 3, job['cls_size'], job['cls_size'], generator=generator)
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    for dtype in job['dtypes']:
        if dtype != 'fp32':
            checks.append(amp_training_check(classifier, images.to(device), samples, device,
                                             dtype))
    return dict(checks=checks)


def amp_training_check(classifier, images, samples, device, dtype: str,
                       attempts: int = 8) -> dict:
    """Training steps of ``classifier`` under autocast to ``dtype`` until one has finite
    gradients, as a training loop with a dynamic loss scale runs them.

    fp16 goes through a ``GradScaler`` (initial scale 2^16): a step whose scaled gradients
    overflow is skipped and the scale halved, which is how AMP starts, so the check passes
    when a step within ``attempts`` has a finite loss and finite, not all zero, unscaled
    gradients; bf16 needs no scaling and must pass on the first step.
    """
    import torch

    scaler = torch.amp.GradScaler(device.type, enabled=dtype == 'fp16')
    # lr 0: the scaler's step bookkeeping without changing the weights.
    optimizer = torch.optim.SGD(classifier.parameters(), lr=0.0)
    steps, finite = 0, False
    while not finite and steps < (attempts if dtype == 'fp16' else 1):
        steps += 1
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = sum(classifier(images, samples, mode='loss').values())
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads = [p.grad for p in classifier.parameters() if p.grad is not None]
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all())
                                                    for g in grads)
        scaler.step(optimizer)
        scaler.update()
    nonzero = any(bool(g.abs().sum() > 0) for g in grads)
    return dict(check=f'AMP {dtype} training step', value=float(loss.item()),
                gradients=len(grads), steps=steps, loss_scale=scale,
                passed=finite and nonzero,
                tolerance='finite loss and gradients, some non-zero')


WORKERS: Dict[str, Callable[[dict], dict]] = dict(
    throughput=worker_throughput, dense_device=worker_dense, checks=worker_checks)
