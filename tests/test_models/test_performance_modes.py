"""The backbone's other modes compute what the plain model computes: deploy mode
(``switch_to_deploy``), ``torch.compile``, autocast, ``with_cp`` (in train mode: outputs,
gradients and BatchNorm statistics), ``norm_eval``; QuickGELU as the official formula in every
library's scope, the fused residual with stochastic depth, the deprecated ``fuse_kv_conv``.

The CPU kernels: ``test_cpu_kernels.py``. Timings are the benchmark's business
(docs/benchmarks.md); nothing here is timed.
"""

import pytest
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.registry import DefaultScope

from cvt_mm.models.backbones import layers
from cvt_mm.models.backbones.cvt import CvT, Mlp, QuickGELU
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms


def tiny(**kwargs):
    kwargs.setdefault('out_type', 'featmap')
    kwargs.setdefault('out_indices', (0, 1, 2))
    model = CvT(arch=FAST_TEST_ARCH, drop_path_rate=0., **kwargs)
    model.init_weights()
    randomize_biases(model)
    return randomize_norms(model)


def assert_outputs_close(expected, actual, atol=1e-5):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=atol)


# --------------------------------------------------------------------------- deploy mode
@pytest.mark.parametrize('out_type', ['featmap', 'cls_token'])
def test_deploy_mode_keeps_outputs(out_type):
    kwargs = dict(out_indices=-1) if out_type == 'cls_token' else {}
    model = tiny(out_type=out_type, **kwargs).eval()
    x = torch.randn(3, 3, 72, 56)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert_outputs_close(expected, model(x))


def test_norm_eval_freezes_bn_statistics_and_trains_bn_affine_parameters():
    """Under norm_eval (BN frozen while training) the BN running statistics stay as they
    are and the BN affine parameters still get gradients."""
    model = tiny(norm_eval=True).train()
    bn = model.stages[1].blocks[0].attn.conv_proj_q.bn
    assert not bn.training
    stats = bn.running_mean.clone()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.pow(2).mean() for o in outs).backward()
    assert torch.equal(bn.running_mean, stats)
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


# The largest output error of autocast inference, relative to the largest output: bfloat16
# keeps 8 bits of mantissa, float16 11.
AUTOCAST_BOUNDS = {torch.bfloat16: 3e-2, torch.float16: 4e-3}


@pytest.mark.parametrize('dtype', list(AUTOCAST_BOUNDS), ids=str)
def test_autocast_inference_stays_close(dtype):
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        expected = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outputs = model(x)
    scale = max(o.abs().max().item() for o in expected)
    error = max((o.float() - r).abs().max().item() for o, r in zip(outputs, expected))
    assert 1e-5 * scale < error < AUTOCAST_BOUNDS[dtype] * scale  # autocast ran, and closely


def test_deprecated_fuse_kv_conv_warns_and_builds_the_model():
    """``fuse_kv_conv`` is not an argument of CvT any more; old configs that pass it build the
    same model, with a warning."""
    import inspect
    assert 'fuse_kv_conv' not in inspect.signature(CvT).parameters
    with pytest.warns(UserWarning, match=r'CvT\(fuse_kv_conv=\.\.\.\) has no effect'):
        model = tiny(fuse_kv_conv=True)
    plain = tiny()
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert_outputs_close(plain.eval()(x), model.eval()(x), atol=0)


@pytest.mark.parametrize('cpu_kernels', [True, False])
def test_quick_gelu_mlp_trains_as_the_official_formula(cpu_kernels):
    """The MLP with QuickGELU against the official ``x * sigmoid(1.702 * x)`` between the same
    linear layers: outputs and every gradient, with the CPU kernels (scalings folded into the
    weights) and without."""
    from cvt_mm.models.backbones.cpu_kernels import CpuKernels
    torch.manual_seed(0)
    mlp = Mlp(16, 64, dict(type='QuickGELU'),
              cpu_kernels=CpuKernels(mlp_chunk_rows=30) if cpu_kernels else None).train()
    with torch.no_grad():
        mlp.fc1.bias.normal_(0, 0.5)
    x = torch.randn(2, 37, 16, requires_grad=True)

    def official(tokens):
        hidden = mlp.fc1(tokens)
        return mlp.fc2(hidden * torch.sigmoid(1.702 * hidden))

    results = []
    for forward in (official, mlp):
        out = forward(x)
        grads = torch.autograd.grad(out.pow(2).sum(), [x, *mlp.parameters()])
        results.append([out.detach(), *grads])
    assert_outputs_close(*results)


# --------------------------------------------------------------------------- torch.compile
def test_compiled_backbone_matches_eager():
    # Compilation takes a while on CPU (inductor emits and builds C++): one small model.
    model = tiny().eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model)
        assert_outputs_close(expected, compiled(x), atol=1e-4)


# ------------------------------------------------------------------------ stochastic depth
def test_residual_with_dropped_paths_equals_mmcv_drop_path():
    """``add_dropped_path``: the samples mmcv's DropPath drops under the same seed, the same
    forward bit for bit, and its gradients."""
    drop_path = DropPath(0.3).train()
    x, branch = (torch.randn(16, 50, 24, requires_grad=True) for _ in range(2))
    results = []
    for residual in (lambda: x + drop_path(branch),
                     lambda: layers.add_dropped_path(x, branch, 0.3, training=True)):
        torch.manual_seed(3)
        out = residual()
        results.append([out, *torch.autograd.grad(out.pow(2).sum(), [x, branch])])
    (expected, *expected_grads), (actual, *actual_grads) = results
    assert torch.equal(actual, expected)
    dropped = [torch.equal(actual[i], x[i]) for i in range(16)]
    assert 0 < sum(dropped) < 16
    for a, b in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert torch.equal(layers.add_dropped_path(x, branch, 0.3, training=False), x + branch)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_cvt_builds_its_own_quickgelu_in_every_scope(scope):
    # mmpretrain and mmseg register a QuickGELU of their own (the same function, not folded nor
    # chunked): under their default scope, as in their configs, the model must still get ours.
    with DefaultScope.overwrite_default_scope(scope):
        backbone = CvT(arch=FAST_TEST_ARCH).train()
        # A scoped name still chooses that library's class (mmdet has none).
        if scope != 'mmdet':
            theirs = Mlp(16, 64, dict(type=f'{scope}.QuickGELU')).act
            assert type(theirs) is not QuickGELU and type(theirs).__name__ == 'QuickGELU'
    mlps = [module for module in backbone.modules() if isinstance(module, Mlp)]
    assert mlps and all(type(mlp.act) is QuickGELU for mlp in mlps)
    x = torch.randn(2, 37, mlps[0].fc1.in_features, requires_grad=True)
    assert type(mlps[0](x).grad_fn).__name__ == 'ChunkedMlpFunctionBackward'  # folded
