"""The backbone's performance paths compute what the plain model computes.

* deploy mode (``switch_to_deploy``) and a ``torch.compile``d backbone: same outputs;
* the fused k/v projection (one batched matmul) against the unfused arithmetic written out
  here, in train mode (BN batch statistics and running-stat updates, gradients) and in eval
  mode;
* the query chunks of the CPU training attention, against the explicit-softmax reference;
* the MLP's QuickGELU with its scalings in the linear layers, against the official formula;
* the chunked inference-time MLP, and inference under autocast.

Timings are the benchmark's business (docs/benchmarks.md); nothing here is timed.
"""
import copy
import warnings

import pytest
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.registry import DefaultScope

from cvt_mm.models.backbones import cvt as cvt_module
from cvt_mm.models.backbones.cvt import ConvAttention, CvT, Mlp, QuickGELU
from cvt_mm.testing import TINY_ARCH, randomize_norms


def tiny(**kwargs):
    kwargs.setdefault('out_type', 'featmap')
    kwargs.setdefault('out_indices', (0, 1, 2))
    model = CvT(arch=TINY_ARCH, drop_path_rate=0., **kwargs)
    model.init_weights()
    with torch.no_grad():  # the official init zeroes Linear biases; random ones must matter
        for name, param in model.named_parameters():
            if name.endswith('bias'):
                param.normal_(0, 0.1)
    return randomize_norms(model)


def assert_outputs_close(expected, actual, atol=1e-5):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=atol)


# ----------------------------------------------------------------------- unfused reference
def reference_attention(attn: ConvAttention, x: torch.Tensor, hw_shape) -> torch.Tensor:
    """ConvAttention as the official code computes it: three conv -> BN -> tokens -> (cls
    prepended) -> linear projections, one after the other, and an explicit softmax."""
    batch, _, channels = x.shape
    cls_token = None
    if attn.with_cls_token:
        cls_token, x = x[:, :1], x[:, 1:]
    feature_map = x.transpose(1, 2).reshape(batch, channels, *hw_shape)

    def project(conv_proj, linear):
        y = conv_proj.bn(conv_proj.conv(feature_map)).flatten(2).transpose(1, 2)
        if cls_token is not None:
            y = torch.cat((cls_token, y), dim=1)
        y = linear(y)
        return y.view(batch, y.shape[1], attn.num_heads, -1).transpose(1, 2)

    q = project(attn.conv_proj_q, attn.proj_q)
    k = project(attn.conv_proj_k, attn.proj_k)
    v = project(attn.conv_proj_v, attn.proj_v)
    weights = (q @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, -1, channels)
    return attn.proj(out)


def make_attention(with_cls_token, seed=0):
    torch.manual_seed(seed)
    attn = ConvAttention(24, 3, with_cls_token)
    randomize_norms(attn, seed)
    with torch.no_grad():
        for name, param in attn.named_parameters():
            if name.endswith('bias'):
                param.normal_(0, 0.1)
    return attn


def bn_state(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()
            if 'running' in name or 'num_batches' in name}


@pytest.mark.parametrize('with_cls_token', [False, True])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_fused_kv_equals_unfused_arithmetic(with_cls_token, mode):
    attn = make_attention(with_cls_token).train(mode == 'train')
    reference = copy.deepcopy(attn)
    hw_shape = (7, 9)
    x = torch.randn(3, int(with_cls_token) + 63, 24)
    x_ref = x.clone().requires_grad_()
    x = x.requires_grad_()

    out = attn(x, hw_shape)
    expected = reference_attention(reference, x_ref, hw_shape)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0.1

    # Train mode: each BN updated its own running statistics, as the unfused modules did;
    # eval mode: none changed.
    before = bn_state(make_attention(with_cls_token))
    after, after_ref = bn_state(attn), bn_state(reference)
    assert after.keys() == after_ref.keys()
    for name in after:
        torch.testing.assert_close(after[name], after_ref[name], rtol=1e-5, atol=1e-6)
        assert torch.equal(after[name], before[name]) == (mode == 'eval'), name

    # Same gradients for every parameter and the input.
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    for (name, p), p_ref in zip(attn.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_deprecated_fuse_kv_conv_warns_and_matches_default_in_train_and_eval():
    plain = tiny().train()
    with pytest.warns(UserWarning, match=r'fuse_kv_conv=True\) has no effect'):
        fused = tiny(fuse_kv_conv=True).train()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 80)
    assert_outputs_close(plain(x), fused(x))
    for (name, a), b in zip(plain.state_dict().items(), fused.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # running stats
    plain.eval(), fused.eval()
    with torch.no_grad():
        assert_outputs_close(plain(x), fused(x))


def test_state_dict_keys_are_unchanged_by_the_fused_paths():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # fuse_kv_conv is deprecated
        keys = set(tiny(fuse_kv_conv=True).state_dict())
    attn = 'stages.2.blocks.0.attn.'
    for qkv in 'qkv':
        assert f'{attn}conv_proj_{qkv}.conv.weight' in keys
        assert f'{attn}conv_proj_{qkv}.bn.running_var' in keys
        assert f'{attn}proj_{qkv}.weight' in keys
    assert keys == set(tiny().state_dict())


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


# ------------------------------------------------- query chunks of the training attention
@pytest.mark.parametrize('threads, batch_heads, chunks',
                         [(1, 1, 1), (2, 1, 2), (2, 3, 2), (2, 6, 1), (4, 6, 2), (16, 1, 16)])
def test_backward_query_chunks_give_every_thread_a_share(threads, batch_heads, chunks):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert cvt_module.backward_query_chunks(batch_heads) == chunks
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize('with_cls_token', [False, True])
def test_chunked_training_attention_matches_the_reference_and_its_gradients(
        with_cls_token, monkeypatch):
    """One head on 3 threads: 3 query chunks. 7x9 tokens divide into them evenly; with the cls
    token, 64 do not, so the queries are padded and the padding cropped."""
    torch.manual_seed(0)
    attn = ConvAttention(24, 1, with_cls_token)
    randomize_norms(attn, 0)
    x = torch.randn(2, 63 + with_cls_token, 24)
    query_batches = []
    sdpa = cvt_module.F.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        query_batches.append(q.shape[0])
        return sdpa(q, *args, **kwargs)

    def outputs_and_gradients(run):
        model = copy.deepcopy(attn).train()
        inputs = x.clone().requires_grad_(True)
        out = run(model, inputs)
        out.pow(2).mean().backward()
        return [out.detach(), inputs.grad] + [p.grad for p in model.parameters()]

    expected = outputs_and_gradients(lambda m, t: reference_attention(m, t, (7, 9)))
    monkeypatch.setattr(cvt_module.F, 'scaled_dot_product_attention', spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        actual = outputs_and_gradients(lambda m, t: m(t, (7, 9)))
    finally:
        torch.set_num_threads(previous)
    assert query_batches == [2 * 3]
    for a, b in zip(expected, actual):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------- chunked MLP
@pytest.mark.parametrize('act', ['QuickGELU', 'GELU', 'ReLU'])
def test_chunked_inference_mlp_equals_plain(act, monkeypatch):
    model = tiny(act_cfg=dict(type=act)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.enable_grad():  # autograd on: the plain path
        expected = [o.detach() for o in model(x)]
    monkeypatch.setattr(Mlp, 'chunk_rows', 100)  # several uneven chunks per stage
    with torch.inference_mode():
        assert_outputs_close(expected, model(x))


def test_quick_gelu_mlp_trains_as_the_official_formula():
    """The MLP with QuickGELU (its scalings moved into fc1 and fc2) against the official
    ``x * sigmoid(1.702 * x)`` between the same linear layers: outputs and every gradient."""
    torch.manual_seed(0)
    mlp = Mlp(16, 64, dict(type='QuickGELU')).train()
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


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_inference_stays_close(dtype):
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        expected = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outputs = model(x)
    scale = max(o.abs().max().item() for o in expected)
    for output, reference in zip(outputs, expected):
        assert (output.float() - reference).abs().max().item() < 0.05 * scale


# --------------------------------------------------------------------------- torch.compile
def test_compiled_backbone_matches_eager():
    # Compilation takes a while on CPU (inductor emits and builds C++): one small model.
    model = tiny().eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model)
        assert_outputs_close(expected, compiled(x), atol=1e-4)


# ------------------------------------------------------------------ chunked training MLP
def plain_mlp(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    """The MLP as autograd differentiates it op by op (the GPU path)."""
    return mlp.transform(x, mlp.folded_parameters())


@pytest.mark.parametrize('bias', [True, False])
def test_chunked_training_mlp_equals_plain(bias, monkeypatch):
    """The CPU training MLP (:class:`ChunkedMlpFunction`): over uneven chunks, the output and
    every gradient as the plain MLP's."""
    torch.manual_seed(0)
    mlp = Mlp(16, 64, dict(type='QuickGELU')).train()
    if not bias:
        mlp.fc1.bias = mlp.fc2.bias = None
    monkeypatch.setattr(Mlp, 'chunk_rows', 30)
    x = torch.randn(2, 37, 16)
    results = []
    for forward in (plain_mlp, lambda m, t: m(t)):
        inputs = x.clone().requires_grad_()
        out = forward(mlp, inputs)
        chunked = type(out.grad_fn).__name__ == 'ChunkedMlpFunctionBackward'
        assert chunked == (forward is not plain_mlp)
        grads = torch.autograd.grad(out.pow(2).sum(), [inputs, *mlp.parameters()])
        results.append([out.detach(), *grads])
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def saved_bytes(forward) -> int:
    """The bytes of the tensors that autograd keeps from ``forward()`` for its backward."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.untyped_storage().nbytes()) or t, lambda t: t):
        out = forward()
    out.sum().backward()
    return sum(saved)


def test_chunked_training_mlp_keeps_one_hidden_activation_not_two():
    # fc1's output alone is kept for backward; autograd op by op keeps the activation's
    # output as well (and the input, a quarter of the hidden width, in both).
    mlp = Mlp(16, 64, dict(type='QuickGELU')).train()
    x = torch.randn(2, 100, 16, requires_grad=True)
    hidden = 2 * 100 * 64 * 4
    assert saved_bytes(lambda: plain_mlp(mlp, x)) >= 2 * hidden
    assert saved_bytes(lambda: mlp(x)) < 2 * hidden


def test_training_mlp_plain_where_chunks_do_not_apply():
    # Other activations, active dropout and autocast take autograd's own ops; so does a GPU
    # tensor (not here).
    x = torch.randn(2, 37, 16, requires_grad=True)
    for mlp in (Mlp(16, 64, dict(type='QuickGELU'), drop=0.5).train(),
                Mlp(16, 64, dict(type='GELU')).train()):
        assert type(mlp(x).grad_fn).__name__ != 'ChunkedMlpFunctionBackward'
    mlp = Mlp(16, 64, dict(type='QuickGELU')).train()
    assert type(mlp(x).grad_fn).__name__ == 'ChunkedMlpFunctionBackward'
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = mlp(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()


# ------------------------------------------------------------------------ stochastic depth
def test_residual_with_dropped_paths_equals_mmcv_drop_path():
    """``add_dropped_path``: the samples mmcv's DropPath drops under the same seed, the same
    forward bit for bit, and its gradients."""
    drop_path = DropPath(0.3).train()
    x, branch = (torch.randn(16, 50, 24, requires_grad=True) for _ in range(2))
    results = []
    for residual in (lambda: x + drop_path(branch),
                     lambda: cvt_module.add_dropped_path(x, branch, drop_path)):
        torch.manual_seed(3)
        out = residual()
        results.append([out, *torch.autograd.grad(out.pow(2).sum(), [x, branch])])
    (expected, *expected_grads), (actual, *actual_grads) = results
    assert torch.equal(actual, expected)
    dropped = [torch.equal(actual[i], x[i]) for i in range(16)]
    assert 0 < sum(dropped) < 16
    for a, b in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    drop_path.eval()
    assert torch.equal(cvt_module.add_dropped_path(x, branch, drop_path), x + branch)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_cvt_builds_its_own_quickgelu_in_every_scope(scope):
    # mmpretrain and mmseg register a QuickGELU of their own (the same function, not folded nor
    # chunked): under their default scope, as in their configs, the model must still get ours.
    with DefaultScope.overwrite_default_scope(scope):
        backbone = CvT(arch=TINY_ARCH).train()
        # A scoped name still chooses that library's class (mmdet has none).
        if scope != 'mmdet':
            theirs = Mlp(16, 64, dict(type=f'{scope}.QuickGELU')).act
            assert type(theirs) is not QuickGELU and type(theirs).__name__ == 'QuickGELU'
    mlps = [module for module in backbone.modules() if isinstance(module, Mlp)]
    assert mlps and all(type(mlp.act) is QuickGELU for mlp in mlps)
    x = torch.randn(2, 37, mlps[0].fc1.in_features, requires_grad=True)
    assert type(mlps[0](x).grad_fn).__name__ == 'ChunkedMlpFunctionBackward'
