"""A stand-in for ``mmcv._ext`` where mmcv was built without its compiled ops.

mmcv built with ``MMCV_WITH_OPS=0`` (``mmcv-lite``, the offline wheels of docs/install.md) has no
``mmcv._ext``, so ``mmcv.ops`` does not import, nor do ``mmdet.models`` and ``mmseg.models``,
which import it whole. Mask R-CNN and UperNet call only two of its compiled ops: RoIAlign
(the RoI extractors and the mask targets) and NMS (the RPN's proposals and the test-time
boxes). torchvision ships both as CPU and CUDA kernels with the same definitions (Detectron2's
RoIAlign with ``aligned``, the adaptive ``sampling_ratio=0``; greedy NMS in falling score
order), so this module serves those two from torchvision and makes every other compiled op a
function that raises, naming the op, when it is called: ``mmcv.ops`` imports, what Mask R-CNN
and UperNet need runs, and anything else fails where it is used.

``import cvt_mm`` installs it where mmcv has no ``mmcv._ext`` and torchvision is installed; with
mmcv's compiled ops present nothing changes, and an ``mmcv._ext`` that fails to load is left to
raise its own error.
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


def check_avg_pool(pool_mode: int) -> None:
    if pool_mode != AVG_POOL:
        raise NotImplementedError(
            "RoIAlign with pool_mode='max' needs mmcv's compiled ops (mmcv._ext), which this "
            "mmcv lacks; torchvision's RoIAlign, which cvt_mm serves instead, averages")


SERVED = {'roi_align_forward': roi_align_forward, 'roi_align_backward': roi_align_backward,
          'nms': nms}


def missing_op(name: str):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv op '{name}' is compiled code (mmcv._ext), which this mmcv lacks (built "
            f"without ops); cvt_mm serves only {', '.join(SERVED)} from torchvision. "
            'Install mmcv with its ops: docs/install.md')
    op.__name__ = name
    return op


class FallbackExt(types.ModuleType):
    """``mmcv._ext`` as mmcv's ``ext_loader.load_ext`` sees it: every op it asks for exists."""

    def __getattr__(self, name: str):
        if name.startswith('_'):  # the import system's probes (__path__, ...) stay absent
            raise AttributeError(name)
        return missing_op(name)


def compiled_ops_absent() -> bool:
    """Whether mmcv has no ``mmcv._ext`` at all. One that exists but fails to load (built
    against another torch) is not absent: its own import error says what is wrong."""
    return module_absent('mmcv._ext')


def module_absent(name: str) -> bool:
    """Whether the import system finds no module ``name`` (nor its package), importing
    nothing but the package."""
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:
        return True


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
    ext = FallbackExt('mmcv._ext', __doc__.splitlines()[0])
    # No loader: mmcv's check_ops_exist() (pkgutil.find_loader) still says there are no
    # compiled ops, so the code that picks them over pure-PyTorch paths keeps the latter.
    ext.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)
    ext.__dict__.update(SERVED)
    sys.modules['mmcv._ext'] = ext
    return True
