"""Run the mmcv ops that cvt_mm serves for mmcv-lite on a device, forward and backward, and
compare them with the same ops on the CPU and, where mmcv has its compiled ops, with mmcv's
kernels on that device.

    python tools/check_gpu_ops.py                 # CUDA (the GPU workstation check)
    python tools/check_gpu_ops.py --device cpu

Prints one row per comparison and exits 1 if any differs by more than its tolerance (see
docs/install.md, "GPU workstation").
"""
import argparse
import importlib
import sys

import torch

import cvt_mm  # noqa: F401  (stands in for a missing mmcv._ext)
from cvt_mm import mmcv_ext_fallback as served


def roi_align(ext, device):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 40, 56, generator=generator).to(device)
    corners = torch.rand(50, 2, generator=generator) * 200
    rois = torch.cat([torch.randint(0, 2, (50, 1), generator=generator).float(), corners,
                      corners + torch.rand(50, 2, generator=generator) * 100], 1).to(device)
    options = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=0,
                   pool_mode=served.AVG_POOL, aligned=True)
    unused = features.new_zeros(0)
    output = features.new_zeros(50, 8, 7, 7)
    ext.roi_align_forward(features, rois, output, unused, unused, **options)
    grad_input = torch.zeros_like(features)
    grad_output = torch.randn(output.shape, generator=generator).to(device)
    ext.roi_align_backward(grad_output, rois, unused, unused, grad_input, **options)
    return [output, grad_input]


def nms(ext, device):
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(3000, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 1 + 20 * torch.rand(3000, 2, generator=generator)], 1)
    scores = torch.rand(3000, generator=generator)
    return [ext.nms(boxes.to(device), scores.to(device), iou_threshold=0.5, offset=offset)
            for offset in (0, 1)]


def sigmoid_focal_loss(ext, device):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(256, 80, generator=generator) * 4).to(device)
    labels = torch.randint(0, 81, (256,), generator=generator).to(device)
    unused = logits.new_zeros(0)
    output, grad_input = torch.zeros_like(logits), torch.zeros_like(logits)
    ext.sigmoid_focal_loss_forward(logits, labels, unused, output, gamma=2.0, alpha=0.25)
    ext.sigmoid_focal_loss_backward(logits, labels, unused, grad_input, gamma=2.0, alpha=0.25)
    return [output, grad_input]


def ms_deform_attn(ext, device):
    generator = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[32, 40], [16, 20], [8, 10], [4, 5]])
    level_start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    value = torch.randn(2, int(shapes.prod(1).sum()), 8, 32, generator=generator)
    locations = torch.rand(2, 100, 8, 4, 4, 2, generator=generator) * 1.2 - 0.1
    weights = torch.rand(2, 100, 8, 4, 4, generator=generator).softmax(-1)
    grad_output = torch.randn(2, 100, 256, generator=generator)
    value, shapes, level_start, locations, weights, grad_output = (
        t.to(device) for t in (value, shapes, level_start, locations, weights, grad_output))
    output = ext.ms_deform_attn_forward(value, shapes, level_start, locations, weights,
                                        im2col_step=64)
    grads = [torch.zeros_like(t) for t in (value, locations, weights)]
    ext.ms_deform_attn_backward(value, shapes, level_start, locations, weights, grad_output,
                                *grads, im2col_step=64)
    return [output] + grads


# op: (run, tolerance). NMS compares kept indices exactly.
CHECKS = {'roi_align': (roi_align, 1e-5), 'nms': (nms, 0),
          'sigmoid_focal_loss': (sigmoid_focal_loss, 1e-5),
          'ms_deform_attn': (ms_deform_attn, 1e-4)}


def compiled_mmcv_ext():
    """mmcv's own compiled ops where this mmcv has them, else None."""
    return None if served.installed() else importlib.import_module('mmcv._ext')


def max_difference(results, references) -> float:
    if any(a.shape != b.shape for a, b in zip(results, references)):
        return float('inf')
    return max((a.cpu().double() - b.cpu().double()).abs().max().item() if a.numel() else 0.0
               for a, b in zip(results, references))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print(f'torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: check the '
              'driver (nvidia-smi) against docs/install.md, "GPU workstation"')
        return 1
    mmcv_ext = compiled_mmcv_ext()
    failures = 0
    print(f'{"op":<20} {"compared with":<34} {"max |diff|":>11}  result')
    for name, (run, tolerance) in CHECKS.items():
        result = run(served, device)
        references = {'cvt_mm stand-in on cpu': run(served, 'cpu')}
        if mmcv_ext is not None:
            try:
                references[f"mmcv's compiled kernel on {device.type}"] = run(mmcv_ext, device)
            except (NotImplementedError, RuntimeError) as error:  # a kernel mmcv lacks there
                print(f'{name:<20} {"mmcv compiled: " + type(error).__name__:<34}')
        for label, reference in references.items():
            difference = max_difference(result, reference)
            ok = difference <= tolerance
            failures += not ok
            print(f'{name:<20} {label:<34} {difference:>11.2e}  {"ok" if ok else "FAILED"}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
