"""The stand-in for mmcv's compiled ops (``cvt_mm.mmcv_ext_fallback``): torchvision's RoIAlign
and NMS give what mmcv's compiled kernels give; with mmcv's ops hidden, as the ops-free build
lacks them, ``import cvt_mm`` lets mmdet's and mmseg's models import and a Mask R-CNN training
step gives the losses and gradients it gives on mmcv's ops."""
import json
import subprocess
import sys

import mmcv._ext as compiled  # the suite's mmcv has its ops (tools/setup_env.sh builds them)
import pytest
import torch
from helpers import WITHOUT_MMCV_OPS, sitecustomize_env

from cvt_mm import mmcv_ext_fallback as fallback

CHANNELS, HEIGHT, WIDTH, STRIDE = 8, 40, 56, 4


@pytest.fixture(autouse=True)
def mmcv_compiled_ops():
    # What the stand-in is compared with; import cvt_mm (conftest) would have put the stand-in
    # in place of a missing mmcv._ext, and each comparison would be with itself.
    assert not fallback.installed(), 'these tests need mmcv built with its ops'


def random_rois(count: int, generator: torch.Generator) -> torch.Tensor:
    """(image index, x1, y1, x2, y2) rows in input pixels, some reaching past the map."""
    corners = torch.rand(count, 2, generator=generator) * torch.tensor(
        [WIDTH * STRIDE + 40., HEIGHT * STRIDE + 40.]) - 20
    sides = torch.rand(count, 2, generator=generator) * 120
    images = torch.randint(0, 2, (count, 1), generator=generator).float()
    return torch.cat([images, corners, corners + sides], dim=1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_roi_align_matches_mmcv_compiled_kernel(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, CHANNELS, HEIGHT, WIDTH, generator=generator)
    rois = random_rois(50, generator)
    options = dict(aligned_height=7, aligned_width=7, spatial_scale=1 / STRIDE,
                   sampling_ratio=sampling_ratio, pool_mode=fallback.AVG_POOL, aligned=aligned)
    unused = features.new_zeros(0)  # the argmax buffers of max pooling
    outputs, grads = [], []
    for ext in (compiled, fallback):
        output = features.new_zeros(len(rois), CHANNELS, 7, 7)
        ext.roi_align_forward(features, rois, output, unused, unused, **options)
        grad_output = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
        grad_input = torch.zeros_like(features)
        ext.roi_align_backward(grad_output, rois, unused, unused, grad_input, **options)
        outputs.append(output)
        grads.append(grad_input)
    assert outputs[0].abs().max() > 0 and grads[0].abs().max() > 0
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize('score_levels', [None, 5])
def test_nms_matches_mmcv_compiled_kernel_with_either_offset(score_levels):
    # Boxes of 1-4 px, where mmcv's legacy offset of 1 (inclusive corners) changes overlaps;
    # scores all different, or of 5 values (the ties of a detector's uniform padding).
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(3000, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 1 + 3 * torch.rand(3000, 2, generator=generator)], 1)
    scores = torch.rand(3000, generator=generator)
    if score_levels:
        scores = (scores * score_levels).floor() / score_levels
    for threshold in (0.3, 0.5):
        kept = {offset: compiled.nms(boxes, scores, iou_threshold=threshold, offset=offset)
                for offset in (0, 1)}
        assert not torch.equal(kept[0], kept[1])
        for offset, expected in kept.items():
            assert torch.equal(
                fallback.nms(boxes, scores, iou_threshold=threshold, offset=offset), expected)


def test_ops_it_does_not_serve_raise_naming_the_op():
    ext = fallback.FallbackExt('mmcv._ext')
    with pytest.raises(NotImplementedError, match="mmcv op 'deform_conv_forward' is compiled"):
        ext.deform_conv_forward(torch.zeros(1))
    assert not hasattr(ext, '__path__')  # the import system sees a module, not a package
    features = torch.zeros(1, 1, 4, 4)
    with pytest.raises(NotImplementedError, match="pool_mode='max'"):
        fallback.roi_align_forward(
            features, torch.zeros(1, 5), torch.zeros(1, 1, 2, 2), features, features,
            aligned_height=2, aligned_width=2, spatial_scale=1.0, sampling_ratio=0, pool_mode=0,
            aligned=True)


# One Mask R-CNN training step of the tiny CvT at 128x160 with 3 boxes and masks: the RPN's
# NMS, the RoI heads' RoIAlign forward and backward, the mask targets' RoIAlign. Prints which
# ops served it; writes the losses and the parameters' gradients to argv[1].
TRAINING_STEP = '''
import json, sys
import torch
import cvt_mm  # first, as tools/train.py and the configs' custom_imports import it
import mmseg.models  # noqa: F401  (imports every mmcv.ops module)
from mmcv.utils import ext_loader
from cvt_mm.benchmark.builders import build_detector, detection_training_batch
from cvt_mm.testing import TINY_ARCH

model, image = build_detector('cvt13_maskrcnn_coco.py', TINY_ARCH, (128, 160))
model.train()
losses = model(**detection_training_batch(model, image, 3), mode='loss')
loss, log_vars = model.parse_losses(losses)  # each loss summed over its levels
loss.backward()
torch.save(dict(losses=dict(log_vars),
                grads={name: p.grad for name, p in model.named_parameters()
                       if p.grad is not None}), sys.argv[1])
print(json.dumps(dict(fallback=cvt_mm.mmcv_ext_fallback.installed(),
                      check_ops_exist=ext_loader.check_ops_exist())))
'''


def run_training_step(out, env=None) -> dict:
    proc = subprocess.run([sys.executable, '-c', TRAINING_STEP, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mask_rcnn_training_step_without_mmcv_ops_matches_it_with_them(tmp_path):
    env = sitecustomize_env(tmp_path / 'site', WITHOUT_MMCV_OPS)
    probe = subprocess.run([sys.executable, '-c', 'import mmdet.models'], env=env,
                           capture_output=True, text=True)
    assert "No module named 'mmcv._ext'" in probe.stderr  # what `import cvt_mm` first fixes
    assert run_training_step(tmp_path / 'fallback.pt', env) == dict(fallback=True,
                                                                     check_ops_exist=False)
    assert run_training_step(tmp_path / 'compiled.pt') == dict(fallback=False,
                                                               check_ops_exist=True)
    with_fallback, with_compiled = (torch.load(tmp_path / f'{name}.pt')
                                    for name in ('fallback', 'compiled'))
    assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(with_compiled['losses'])
    torch.testing.assert_close(with_fallback, with_compiled)
    assert any(name.startswith('roi_head.mask_head') for name in with_compiled['grads'])


# mmcv._ext present but failing to load, as one built against another torch does.
BROKEN_MMCV_OPS = '''
import importlib.abc, importlib.machinery, sys

class BrokenLoader(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError('mmcv/_ext.so: undefined symbol: _ZN3c10builtagainstanothertorch')

    def exec_module(self, module):
        pass

class BrokenMmcvOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'mmcv._ext':
            return importlib.machinery.ModuleSpec(name, BrokenLoader())

sys.meta_path.insert(0, BrokenMmcvOps())
'''

# No torchvision, and no compiled ops.
WITHOUT_TORCHVISION = WITHOUT_MMCV_OPS + '''
class NoTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'torchvision':
            raise ModuleNotFoundError("No module named 'torchvision'")

sys.meta_path.insert(0, NoTorchvision())
'''


@pytest.mark.parametrize('site, error', [
    (BROKEN_MMCV_OPS, 'undefined symbol'), (WITHOUT_TORCHVISION, "No module named 'mmcv._ext'")])
def test_no_stand_in_for_a_broken_mmcv_build_nor_without_torchvision(tmp_path, site, error):
    # An mmcv._ext that fails to load keeps its own error, which says what is wrong with it.
    env = sitecustomize_env(tmp_path / 'site', site)
    proc = subprocess.run(
        [sys.executable, '-c', 'import cvt_mm\n'
         'assert not cvt_mm.mmcv_ext_fallback.installed()\nimport mmcv.ops'],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and error in proc.stderr.strip().splitlines()[-1], proc.stderr
