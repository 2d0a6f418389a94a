"""The stand-in for mmcv's compiled ops (``cvt_mm.mmcv_ext_fallback``), which serves the suite's
mmcv-lite: each op it serves gives what mmcv's compiled CPU kernel gives (tests/mmcv_reference.py
loads those) or, for the ops mmcv compiles for GPUs only, what the pure-PyTorch path that mmdet
or mmcv takes on the CPU gives; a Mask R-CNN training step gives the losses and gradients it
gives on mmcv's compiled ops."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import TOOLS_DIR, WITHOUT_MMCV_OPS, sitecustomize_env
from mmcv_reference import load_compiled_ext, with_compiled_mmcv_ops

from cvt_mm import mmcv_ext_fallback as fallback

CHANNELS, HEIGHT, WIDTH, STRIDE = 8, 40, 56, 4


@pytest.fixture(scope='module')
def compiled():
    return load_compiled_ext()


def random_rois(count: int, generator: torch.Generator) -> torch.Tensor:
    """(image index, x1, y1, x2, y2) rows in input pixels, some reaching past the map."""
    corners = torch.rand(count, 2, generator=generator) * torch.tensor(
        [WIDTH * STRIDE + 40., HEIGHT * STRIDE + 40.]) - 20
    sides = torch.rand(count, 2, generator=generator) * 120
    images = torch.randint(0, 2, (count, 1), generator=generator).float()
    return torch.cat([images, corners, corners + sides], dim=1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_roi_align_matches_mmcv_compiled_kernel(compiled, aligned, sampling_ratio):
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
def test_nms_matches_mmcv_compiled_kernel_with_either_offset(compiled, score_levels):
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


# mmdet's FocalLoss (RetinaNet, DINO) calls mmcv's compiled sigmoid_focal_loss on a GPU and its
# own py_sigmoid_focal_loss elsewhere; mmcv compiles the former for GPUs only, so the stand-in
# is compared with mmdet's other path, and with mmcv's kernel by tools/check_gpu_ops.py.
@pytest.mark.parametrize('sample_weight', [False, True])
def test_sigmoid_focal_loss_matches_mmdets_pytorch_path(sample_weight):
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss, sigmoid_focal_loss
    generator = torch.Generator().manual_seed(0)
    num_classes = 5
    logits = torch.randn(64, num_classes, generator=generator) * 4
    labels = torch.randint(0, num_classes + 1, (64,), generator=generator)  # 5: background
    weight = torch.rand(64, generator=generator) if sample_weight else None
    losses, grads = [], []
    for on_gpu_path in (True, False):
        pred = logits.clone().requires_grad_()
        if on_gpu_path:
            loss = sigmoid_focal_loss(pred, labels, weight, gamma=2.0, alpha=0.25)
        else:
            one_hot = F.one_hot(labels, num_classes + 1)[:, :num_classes]
            loss = py_sigmoid_focal_loss(pred, one_hot, weight, gamma=2.0, alpha=0.25)
        loss.backward()
        losses.append(loss.detach())
        grads.append(pred.grad)
    assert losses[1] > 0 and grads[1].abs().max() > 0
    # The kernel's log(max(p, FLT_MIN)) against mmdet's binary_cross_entropy_with_logits: float32
    # rounding apart at logits of |x| ~ 10; a wrong alpha or gamma moves the loss by percents.
    torch.testing.assert_close(losses[0], losses[1], rtol=2e-5, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=2e-5, atol=1e-7)


def test_sigmoid_focal_loss_class_weight_scales_by_the_targets_class():
    from mmcv.ops import sigmoid_focal_loss
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 3, generator=generator).requires_grad_()
    labels = torch.randint(0, 3, (16,), generator=generator)
    class_weight = torch.tensor([0.5, 1.0, 2.0])
    weighted = sigmoid_focal_loss(logits, labels, 2.0, 0.25, class_weight, 'none')
    plain = sigmoid_focal_loss(logits, labels, 2.0, 0.25, None, 'none')
    torch.testing.assert_close(weighted, plain * class_weight[labels][:, None])


def test_multi_scale_deformable_attention_matches_mmcvs_pytorch_path():
    # Mask2Former's pixel decoder and DINO call it; mmcv's compiled kernel is GPU-only, and
    # mmcv takes multi_scale_deformable_attn_pytorch elsewhere.
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction,
        multi_scale_deformable_attn_pytorch,
    )
    generator = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[8, 10], [4, 5], [2, 3]])
    level_start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    batch, heads, dims, queries, points = 2, 2, 4, 7, 4
    value = torch.randn(batch, int(shapes.prod(1).sum()), heads, dims, generator=generator)
    # Some points outside the maps, where the sampling reads zeros.
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2,
                           generator=generator) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes), points,
                         generator=generator).softmax(-1)
    results = []
    for through_mmcv_function in (True, False):
        inputs = [tensor.clone().requires_grad_() for tensor in (value, locations, weights)]
        if through_mmcv_function:
            output = MultiScaleDeformableAttnFunction.apply(inputs[0], shapes, level_start,
                                                            inputs[1], inputs[2], 64)
        else:
            output = multi_scale_deformable_attn_pytorch(inputs[0], shapes, inputs[1],
                                                         inputs[2])
        output.backward(torch.linspace(-1, 1, output.numel()).view_as(output))
        results.append([output.detach()] + [tensor.grad for tensor in inputs])
    assert results[1][0].shape == (batch, queries, heads * dims)
    assert all(tensor.abs().max() > 0 for tensor in results[1])
    for served, reference in zip(*results):
        torch.testing.assert_close(served, reference, rtol=0, atol=0)


def test_mmdet_imports_before_cvt_mm_on_the_stand_in():
    # mmdet's own scripts (tools/train.py, browse_dataset.py) import mmcv.ops before any config
    # imports cvt_mm: the start-up finder (cvt_mm_mmcv_ext_finder.pth) serves the stand-in.
    code = ('import sys, mmdet.models\n'
            'from mmcv.utils import ext_loader\n'
            'print("cvt_mm" in sys.modules, ext_loader.check_ops_exist())\n'
            'import cvt_mm\n'
            'print(cvt_mm.mmcv_ext_fallback.installed(), type(sys.modules["mmcv._ext"]).__name__)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['False', 'False', 'True', 'FallbackExt']


def test_import_without_mmcv_names_what_to_install(tmp_path):
    env = sitecustomize_env(tmp_path / 'site', WITHOUT_MMCV)
    proc = subprocess.run([sys.executable, '-c', 'import cvt_mm'], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ImportError: cvt_mm needs mmcv 2.0 or 2.1 and finds none: pip install "
        "'mmcv-lite==2.1.0' (pure Python, what `make env` installs) or mmcv with its compiled "
        'ops (docs/install.md)')


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
from benchmarking.builders import build_detector, detection_training_batch
from cvt_mm.testing import FAST_TEST_ARCH

model, image = build_detector('cvt13_maskrcnn_coco.py', FAST_TEST_ARCH, (128, 160))
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
    # The builders are the benchmark's, in tools/benchmarking/ outside the package.
    env = dict(env or os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(TOOLS_DIR), env.get('PYTHONPATH')]))
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
    compiled_env = sitecustomize_env(tmp_path / 'compiled_site', with_compiled_mmcv_ops())
    assert run_training_step(tmp_path / 'compiled.pt', compiled_env) == dict(
        fallback=False, check_ops_exist=True)
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

WITHOUT_MMCV = '''
import importlib.abc, sys

class NoMmcv(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'mmcv' or name.startswith('mmcv.'):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoMmcv())
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


def test_gpu_check_compares_with_mmcv_kernels_where_mmcv_has_them(tmp_path):
    # tools/check_gpu_ops.py, the GPU workstation's check, run on the CPU: the stand-in against
    # itself on the CPU (on mmcv-lite), and against mmcv's compiled kernels where mmcv has them
    # (which on the CPU are RoIAlign's and NMS's; focal loss and deformable attention are
    # compiled for GPUs only, and the check says so).
    command = [sys.executable, str(TOOLS_DIR / 'check_gpu_ops.py'), '--device', 'cpu']
    lite = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert lite.returncode == 0, lite.stdout + lite.stderr
    rows = [line.split() for line in lite.stdout.splitlines()[1:]]
    assert [(row[0], row[-1]) for row in rows] == [
        (op, 'ok') for op in ('roi_align', 'nms', 'sigmoid_focal_loss', 'ms_deform_attn')]
    env = sitecustomize_env(tmp_path / 'site', with_compiled_mmcv_ops())
    full = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert full.returncode == 0, full.stdout + full.stderr
    compared = [line for line in full.stdout.splitlines() if "mmcv's compiled kernel" in line]
    assert [line.split()[0] for line in compared] == ['roi_align', 'nms']
    assert all(line.endswith('ok') for line in compared)
    assert 'sigmoid_focal_loss   mmcv compiled: RuntimeError' in full.stdout
