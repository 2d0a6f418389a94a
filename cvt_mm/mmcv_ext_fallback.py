"""A stand-in for ``mmcv._ext`` where mmcv was built without its compiled ops (mmcv-lite).

mmcv-lite (``make env``'s default, or ``MMCV_WITH_OPS=0``) has no ``mmcv._ext``, so
``mmcv.ops`` does not import, nor do ``mmdet.models`` and ``mmseg.models``, which import it
whole. The shipped configs reach few of its compiled ops, on the CPU or on a GPU (the audit is
in docs/install.md), and this module serves each of them:

- RoIAlign and NMS (Mask R-CNN, Cascade, RetinaNet, detection TTA) from torchvision's CPU and
  CUDA kernels, of the same definitions (Detectron2's RoIAlign with ``aligned`` and the adaptive
  ``sampling_ratio=0``; greedy NMS in falling score order);
- sigmoid focal loss (mmdet's ``FocalLoss`` on a GPU: RetinaNet, DINO) as mmcv's kernel writes
  its forward and its derivative, in PyTorch;
- multi-scale deformable attention (Mask2Former's pixel decoder and DINO on a GPU) as mmcv's
  own pure-PyTorch path, which mmcv takes on the CPU, computes it, its gradients by autograd.

Every other compiled op is a function that raises, naming the op, when it is called: ``mmcv.ops``
imports, what the configs need runs, and anything else fails where it is used.

``import cvt_mm`` installs it where mmcv has no ``mmcv._ext`` and torchvision is installed, and so
does, in every process of an environment where cvt_mm is installed, the start-up finder of
``cvt_mm_mmcv_ext_finder`` when something imports ``mmcv._ext`` first (mmdet's own scripts).
With mmcv's compiled ops present nothing changes, and an ``mmcv._ext`` that fails to load is
left to raise its own error.
"""
import importlib.machinery
import importlib.util
import sys
import types

import torch

# mmcv's RoIAlign pool modes (mmcv/ops/roi_align.py): 0 max, 1 avg.
AVG_POOL = 1


def roi_align_forward(input, rois, output, argmax_y, argmax_x, *, aligned_height,
                      aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    from torchvision.ops import roi_align
    check_avg_pool(pool_mode)
    output.copy_(roi_align(input, rois, (aligned_height, aligned_width), spatial_scale,
                           sampling_ratio, aligned))


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, *, aligned_height,
                       aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)
    check_avg_pool(pool_mode)
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output, rois, spatial_scale, aligned_height, aligned_width, *grad_input.shape,
        sampling_ratio, aligned))


def nms(boxes, scores, *, iou_threshold, offset):
    from torchvision.ops import nms as torchvision_nms

    # mmcv's offset adds to the widths and heights (legacy boxes with inclusive corners):
    # the same overlaps as boxes whose far corners move out by it.
    if offset:
        boxes = boxes + boxes.new_tensor([0, 0, offset, offset])
    # mmcv visits the boxes in the order of its (unstable) descending sort; torchvision sorts
    # stably, so given them in that order it breaks ties among equal scores as mmcv does.
    order = scores.sort(0, descending=True)[1]
    return order[torchvision_nms(boxes[order], scores[order], iou_threshold)]


def sigmoid_focal_loss_forward(input, target, weight, output, *, gamma, alpha):
    """mmcv's kernel: per class c, -alpha (1-p)^gamma log p where the target is c, else
    -(1-alpha) p^gamma log(1-p); a target of num_classes is background; scaled by weight[target]
    where a class weight is given. log of at least FLT_MIN, as the kernel clamps."""
    p, positive = input.sigmoid(), focal_loss_positives(input, target)
    tiny = torch.finfo(torch.float32).tiny
    loss = torch.where(positive, -alpha * (1 - p).pow(gamma) * p.clamp_min(tiny).log(),
                       -(1 - alpha) * p.pow(gamma) * (1 - p).clamp_min(tiny).log())
    output.copy_(loss * focal_loss_class_weight(weight, target))


def sigmoid_focal_loss_backward(input, target, weight, grad_input, *, gamma, alpha):
    """The forward's derivative in the logits, as mmcv's kernel writes it (grad_output is applied
    by mmcv's autograd function)."""
    p, positive = input.sigmoid(), focal_loss_positives(input, target)
    tiny = torch.finfo(torch.float32).tiny
    grad = torch.where(
        positive, -alpha * (1 - p).pow(gamma) * (1 - p - gamma * p * p.clamp_min(tiny).log()),
        -(1 - alpha) * p.pow(gamma) * (gamma * (1 - p) * (1 - p).clamp_min(tiny).log() - p))
    grad_input.copy_(grad * focal_loss_class_weight(weight, target))


def focal_loss_positives(input, target):
    classes = torch.arange(input.size(1), device=input.device)
    return target[:, None] == classes


def focal_loss_class_weight(weight, target):
    return weight[target][:, None] if weight.numel() else 1.0


def ms_deform_attn_forward(value, value_spatial_shapes, value_level_start_index,
                           sampling_locations, attention_weights, *, im2col_step):
    """mmcv's multi-scale deformable attention as its own pure-PyTorch path computes it (the
    one mmcv takes on the CPU): bilinear sampling, zero outside the maps."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    return multi_scale_deformable_attn_pytorch(value, value_spatial_shapes,
                                               sampling_locations, attention_weights)


def ms_deform_attn_backward(value, value_spatial_shapes, value_level_start_index,
                            sampling_locations, attention_weights, grad_output, grad_value,
                            grad_sampling_loc, grad_attn_weight, *, im2col_step):
    """The pure-PyTorch path's gradients, written into mmcv's buffers."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    inputs = [tensor.detach().requires_grad_()
              for tensor in (value, sampling_locations, attention_weights)]
    with torch.enable_grad():
        output = multi_scale_deformable_attn_pytorch(inputs[0], value_spatial_shapes,
                                                     inputs[1], inputs[2])
    for buffer, grad in zip((grad_value, grad_sampling_loc, grad_attn_weight),
                            torch.autograd.grad(output, inputs, grad_output)):
        buffer.copy_(grad)


def check_avg_pool(pool_mode: int) -> None:
    if pool_mode != AVG_POOL:
        raise NotImplementedError(
            "RoIAlign with pool_mode='max' needs mmcv's compiled ops (mmcv._ext), which this "
            "mmcv lacks; torchvision's RoIAlign, which cvt_mm serves instead, averages")


SERVED = {
    'roi_align_forward': roi_align_forward, 'roi_align_backward': roi_align_backward,
    'nms': nms,
    'sigmoid_focal_loss_forward': sigmoid_focal_loss_forward,
    'sigmoid_focal_loss_backward': sigmoid_focal_loss_backward,
    'ms_deform_attn_forward': ms_deform_attn_forward,
    'ms_deform_attn_backward': ms_deform_attn_backward,
}


def missing_op(name: str):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv op '{name}' is compiled code (mmcv._ext), which this mmcv lacks (mmcv-lite); "
            f"cvt_mm serves only {', '.join(SERVED)}. For mmcv's compiled ops: "
            'make env MMCV_OPS=1 (docs/install.md)')
    op.__name__ = name
    return op


class FallbackExt(types.ModuleType):
    """``mmcv._ext`` as mmcv's ``ext_loader.load_ext`` sees it: every op it asks for exists."""

    def __getattr__(self, name: str):
        if name.startswith('_'):  # the import system's probes (__path__, ...) stay absent
            raise AttributeError(name)
        return missing_op(name)


def compiled_ops_absent() -> bool:
    """Whether mmcv has no ``mmcv._ext`` at all (the start-up finder of
    ``cvt_mm_mmcv_ext_finder`` offers this stand-in, which is no compiled op). One that exists
    but fails to load (built against another torch) is not absent: its own import error says
    what is wrong."""
    try:
        spec = importlib.util.find_spec('mmcv._ext')
    except ImportError:
        return True
    return spec is None or type(spec.loader).__name__ == 'StandInLoader'


def module_absent(name: str) -> bool:
    """Whether the import system finds no module ``name`` (nor its package), importing
    nothing but the package."""
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:
        return True


def require_mmcv() -> None:
    """One line naming what to install where there is no mmcv at all: cvt_mm does not require
    it by name (setup.py), since either distribution of it serves."""
    if module_absent('mmcv'):
        raise ImportError(
            "cvt_mm needs mmcv 2.0 or 2.1 and finds none: pip install 'mmcv-lite==2.1.0' (pure "
            'Python, what `make env` installs) or mmcv with its compiled ops (docs/install.md)')


def installed() -> bool:
    """Whether this module stands in for ``mmcv._ext`` in this process."""
    return isinstance(sys.modules.get('mmcv._ext'), FallbackExt)


def install() -> bool:
    """Stand in for ``mmcv._ext`` where mmcv has none and torchvision is installed; True when
    the stand-in is in place."""
    if installed():
        return True
    if not compiled_ops_absent() or module_absent('torchvision'):
        return False
    sys.modules['mmcv._ext'] = stand_in()
    return True


def stand_in() -> FallbackExt:
    """The module that stands in for ``mmcv._ext``."""
    ext = FallbackExt('mmcv._ext', __doc__.splitlines()[0])
    # No loader: mmcv's check_ops_exist() (pkgutil.find_loader) still says there are no
    # compiled ops, so the code that picks them over pure-PyTorch paths keeps the latter.
    ext.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)
    ext.__dict__.update(SERVED)
    return ext
