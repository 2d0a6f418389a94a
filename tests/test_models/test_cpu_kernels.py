"""The CPU kernels (``cvt_mm/models/backbones/cpu_kernels.py``) compute what the plain modules
compute, apply where :func:`cpu_kernels_apply` says and nowhere else, and take their settings
as arguments. The whole backbone, kernels on and off, against the code before they moved:
``test_golden.py``. Nothing here is timed (``tools/benchmark.py`` times them)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from cvt_mm.models.backbones import cpu_kernels as kernels_module
from cvt_mm.models.backbones.cpu_kernels import (
    ChunkedMlpFunction,
    CpuKernels,
    backward_query_chunks,
    cpu_kernels_apply,
)
from cvt_mm.models.backbones.cvt import ConvAttention, CvT, Mlp
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms
from cvt_mm.testing.saved_tensors import weight_copies_saved_for_backward


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


def outputs_and_gradients(module, forward, x):
    """``forward(module copy, x)``'s output, and the gradients of a fixed function of it with
    respect to the input and every parameter."""
    module = copy.deepcopy(module)
    inputs = x.clone().requires_grad_()
    out = forward(module, inputs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad((out * grad_out).sum(), [inputs, *module.parameters()])
    return [out.detach(), *grads]


def assert_all_close(expected, actual, rtol=1e-5, atol=1e-6):
    assert len(expected) == len(actual)
    for i, (a, b) in enumerate(zip(expected, actual)):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol,
                                   msg=lambda m, i=i: f'tensor {i}: {m}')


@pytest.fixture
def threads():
    """Sets the thread count for one test, then restores it."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------ attention
def make_attention(with_cls_token, num_heads=3, cpu_kernels=CpuKernels()):
    torch.manual_seed(0)
    attn = ConvAttention(24, num_heads, with_cls_token, cpu_kernels=cpu_kernels)
    return randomize_biases(randomize_norms(attn, 0))


@pytest.mark.parametrize('with_cls_token', [False, True])
@pytest.mark.parametrize('cpu_kernels', [CpuKernels(), None], ids=['kernels', 'plain'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_attention_matches_the_official_arithmetic(with_cls_token, cpu_kernels, mode):
    """Outputs, gradients and the BN statistics it leaves, the k/v projection batched (the CPU
    kernel) or not, against the official arithmetic written out."""
    attn = make_attention(with_cls_token, cpu_kernels=cpu_kernels).train(mode == 'train')
    x = torch.randn(3, int(with_cls_token) + 63, 24)
    expected = outputs_and_gradients(attn, lambda m, t: reference_attention(m, t, (7, 9)), x)
    reference_stats = copy.deepcopy(attn)
    reference_attention(reference_stats, x, (7, 9))
    actual = outputs_and_gradients(attn, lambda m, t: m(t, (7, 9)), x)
    assert expected[0].abs().max() > 0.1
    assert_all_close(expected, actual, rtol=1e-4, atol=1e-5)
    attn(x, (7, 9))
    for (name, a), b in zip(attn.named_buffers(), reference_stats.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def spy_on_attention_batches(monkeypatch) -> list:
    """The batch size of every SDPA call from here on (query chunks multiply it)."""
    batches = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        batches.append(q.shape[0])
        return sdpa(q, *args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', spy)
    return batches


@pytest.mark.parametrize('with_cls_token', [False, True])
def test_query_chunks_match_the_official_arithmetic(with_cls_token, threads, monkeypatch):
    """One head on 3 threads: 3 query chunks. 7x9 tokens divide into them evenly; with the cls
    token, 64 do not, so the queries are padded and the padding cropped."""
    attn = make_attention(with_cls_token, num_heads=1).train()
    x = torch.randn(2, 63 + with_cls_token, 24)
    expected = outputs_and_gradients(attn, lambda m, t: reference_attention(m, t, (7, 9)), x)
    threads(3)
    batches = spy_on_attention_batches(monkeypatch)
    actual = outputs_and_gradients(attn, lambda m, t: m(t, (7, 9)), x)
    assert batches == [2 * 3]
    assert_all_close(expected, actual, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('threads_, batch_heads, chunks',
                         [(1, 1, 1), (2, 1, 2), (2, 3, 2), (2, 6, 1), (4, 6, 2), (16, 1, 16)])
def test_backward_query_chunks_give_every_thread_a_share(threads_, batch_heads, chunks,
                                                          threads):
    threads(threads_)
    assert backward_query_chunks(batch_heads) == chunks


@pytest.mark.parametrize('setting, batches', [(None, [2 * 2]), (1, [2]), (5, [2 * 5])])
def test_query_chunks_are_an_argument(setting, batches, threads, monkeypatch):
    threads(4)
    attn = make_attention(False, num_heads=1, cpu_kernels=CpuKernels(query_chunks=setting))
    seen = spy_on_attention_batches(monkeypatch)
    attn.train()(torch.randn(2, 63, 24, requires_grad=True), (7, 9))
    assert seen == batches


# ------------------------------------------------------------------------------------ MLP
def make_mlp(act='QuickGELU', chunk_rows=30, bias=True, drop=0.):
    torch.manual_seed(0)
    mlp = randomize_biases(Mlp(16, 64, dict(type=act), drop,
                                 CpuKernels(mlp_chunk_rows=chunk_rows)))
    if not bias:
        mlp.fc1.bias = mlp.fc2.bias = None
    return mlp


def plain_mlp(mlp, x):
    return mlp.fc2(mlp.act(mlp.fc1(x)))


@pytest.mark.parametrize('act', ['QuickGELU', 'GELU', 'ReLU'])
def test_mlp_in_chunks_equals_the_plain_mlp_in_inference(act):
    mlp = make_mlp(act).eval()
    x = torch.randn(2, 37, 16)  # 74 tokens: chunks of 30, 30 and 14
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), plain_mlp(mlp, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('bias', [True, False])
def test_chunked_training_mlp_equals_the_plain_mlp(bias):
    """:class:`ChunkedMlpFunction` over uneven chunks: the output and every gradient."""
    mlp = make_mlp(bias=bias).train()
    x = torch.randn(2, 37, 16)
    expected = outputs_and_gradients(mlp, plain_mlp, x)
    grad_fns = []

    def forward(module, inputs):
        out = module(inputs)
        grad_fns.append(type(out.grad_fn).__name__)
        return out

    assert_all_close(expected, outputs_and_gradients(mlp, forward, x), atol=1e-5)
    assert grad_fns == ['ChunkedMlpFunctionBackward']


def test_chunked_training_mlp_gives_only_the_gradients_asked_for():
    mlp = make_mlp().train()
    mlp.fc1.requires_grad_(False)
    x = torch.randn(2, 37, 16)
    out = mlp(x)
    out.pow(2).sum().backward()
    assert mlp.fc1.weight.grad is None and mlp.fc1.bias.grad is None
    reference = make_mlp().train()
    plain_mlp(reference, x).pow(2).sum().backward()
    torch.testing.assert_close(mlp.fc2.weight.grad, reference.fc2.weight.grad, rtol=1e-5,
                               atol=1e-6)


def saved_bytes(forward) -> int:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.untyped_storage().nbytes()) or t, lambda t: t):
        forward()
    return sum(saved)


def test_chunked_training_mlp_keeps_one_hidden_activation_not_two():
    # fc1's output alone is kept for backward; autograd op by op keeps the activation's
    # input as well (and the input, a quarter of the hidden width, in both).
    mlp = make_mlp(chunk_rows=2048).train()
    x = torch.randn(2, 100, 16, requires_grad=True)
    hidden = 2 * 100 * 64 * 4
    assert saved_bytes(lambda: plain_mlp(mlp, x)) >= 2 * hidden
    assert saved_bytes(lambda: mlp(x)) < 2 * hidden


def test_mlp_chunk_rows_is_an_argument(monkeypatch):
    calls = []
    linear = F.linear
    monkeypatch.setattr(kernels_module.F, 'linear',
                        lambda x, *args: calls.append(x.shape[0]) or linear(x, *args))
    with torch.no_grad():
        make_mlp(chunk_rows=25).eval()(torch.randn(2, 37, 16))
    assert calls == [25, 25, 25, 25, 24, 24]  # fc1 and fc2 of each chunk


# ----------------------------------------------------------- where the kernels apply
def kernel_in_use(model: CvT, x: torch.Tensor) -> bool:
    """Whether the MLP ran its CPU training kernel in a forward of ``model`` on ``x``."""
    return any(type(out.grad_fn).__name__ == 'ChunkedMlpFunctionBackward'
               for out in [model.stages[0].blocks[0].mlp(x)])


@pytest.mark.parametrize('condition', ['plain', 'autocast', 'onnx export', 'jit trace',
                                       'compile', 'dropout', 'meta device'])
def test_the_kernels_step_aside(condition, monkeypatch):
    x = torch.randn(2, 5, 16)
    if condition == 'meta device':  # a device other than the CPU, as a GPU
        assert not cpu_kernels_apply(x.to('meta'))
        return
    assert cpu_kernels_apply(x)
    if condition == 'dropout':
        assert not cpu_kernels_apply(x, dropout=0.1)
        return
    if condition == 'autocast':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not cpu_kernels_apply(x)
        return
    patched = {'onnx export': (torch.onnx, 'is_in_onnx_export'),
               'jit trace': (torch.jit, 'is_tracing'),
               'compile': (torch.compiler, 'is_compiling')}.get(condition)
    if patched:
        monkeypatch.setattr(*patched, lambda: True)
        assert not cpu_kernels_apply(x)


class AttentionOnMap(torch.nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, tokens):
        return self.attn(tokens, (7, 9))


def test_a_jit_trace_sees_no_kernels():
    """For real: the traced graphs of a training-mode MLP and attention hold no chunked op."""
    mlp = make_mlp().train()
    x = torch.randn(2, 37, 16, requires_grad=True)
    graph = torch.jit.trace(mlp, x, check_trace=False).graph
    assert 'ChunkedMlpFunction' not in str(graph) and 'PythonOp' not in str(graph)
    attn = AttentionOnMap(make_attention(False, num_heads=1)).train()
    graph = torch.jit.trace(attn, torch.randn(2, 63, 24, requires_grad=True),
                            check_trace=False).graph
    assert 'aten::bmm' not in str(graph) and 'aten::baddbmm' not in str(graph)


def tiny(**kwargs):
    torch.manual_seed(0)
    return CvT(arch=FAST_TEST_ARCH, **kwargs)


def test_cpu_kernels_false_runs_the_plain_modules(monkeypatch, threads):
    threads(2)
    model = tiny(cpu_kernels=False).train()
    applied = []
    monkeypatch.setattr(ChunkedMlpFunction, 'apply', lambda *a: applied.append(1))
    batches = spy_on_attention_batches(monkeypatch)
    model(torch.randn(1, 3, 64, 64)).__getitem__(0).sum().backward()
    assert not applied and batches == [1] * 6  # one SDPA per block, unchunked


@pytest.mark.parametrize('argument, settings', [
    (True, CpuKernels()), (False, None),
    (dict(mlp_chunk_rows=64), CpuKernels(mlp_chunk_rows=64)),
    (dict(query_chunks=1), CpuKernels(query_chunks=1))])
def test_cpu_kernels_argument(argument, settings):
    model = tiny(cpu_kernels=argument)
    assert model.cpu_kernels == settings
    blocks = [block for stage in model.stages for block in stage.blocks]
    assert all(b.attn.cpu_kernels == settings and b.mlp.cpu_kernels == settings for b in blocks)


@pytest.mark.parametrize('argument, message', [
    (dict(mlp_rows=64), r"unknown settings \['mlp_rows'\]"),
    (dict(mlp_chunk_rows=0), 'mlp_chunk_rows must be a positive int, got 0'),
    (dict(query_chunks=2.5), 'query_chunks must be a positive int, got 2.5'),
    ('yes', "cpu_kernels must be True, False or a dict of settings, got 'yes'")])
def test_bad_cpu_kernels_argument_is_named(argument, message):
    with pytest.raises(ValueError, match=message):
        tiny(cpu_kernels=argument)


# --------------------------------------------------------- no per-call copies of weights
@pytest.mark.parametrize('arch', ['13', 'w24'])
def test_the_path_gpus_take_saves_no_copy_of_a_weight(arch):
    """On a device other than the CPU (meta: shapes only, as a GPU takes the plain path),
    the training forward at 224 saves no scaled or stacked copy of a weight for backward."""
    with torch.device('meta'):
        model = CvT(arch=arch).train()
        x = torch.randn(1, 3, 224, 224)
    assert weight_copies_saved_for_backward(model, lambda: model(x)).count == 0


def test_plain_modules_on_the_cpu_save_no_copy_of_a_weight():
    model = tiny(cpu_kernels=False).train()
    # At 80x80 no token sequence has the shape of a weight (at 64, stage 0's 8x8 keys of width
    # 16 have fc1's).
    x = torch.randn(1, 3, 80, 80)
    assert weight_copies_saved_for_backward(model, lambda: model(x)).count == 0
    # The CPU kernels keep one: the stacked k/v weight of the batched projection, per block.
    model = tiny().train()
    copies = weight_copies_saved_for_backward(model, lambda: model(x))
    assert copies.count == sum(FAST_TEST_ARCH['depths'])
    assert copies.bytes == sum(2 * width * width * 4 * depth for width, depth in
                               zip(FAST_TEST_ARCH['embed_dims'], FAST_TEST_ARCH['depths']))
