"""The CvT backbone: shapes, options and the registries of all three task libraries."""
import copy

import pytest
import torch
import torch.nn as nn

import cvt_mm  # noqa: F401  (registers CvT)
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.models.backbones.layers import stage_drop_path_rates
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms
from cvt_mm.visualization.attention import key_map_size


def tiny(**kwargs):
    return CvT(arch=FAST_TEST_ARCH, **kwargs)


@pytest.mark.parametrize('size', [(64, 64), (67, 93), (33, 41), (224, 160)])
def test_featmap_strides_any_size(size):
    model = tiny(out_type='featmap', out_indices=(0, 1, 2)).eval()
    x = torch.randn(1, 3, *size)
    outs = model(x)
    assert [o.shape[1] for o in outs] == FAST_TEST_ARCH['embed_dims']
    expected = []
    h, w = size
    for kernel, stride, pad in zip(CvT.patch_sizes, CvT.patch_strides, CvT.patch_paddings):
        h, w = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        expected.append((h, w))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert all(o.is_contiguous() for o in outs)


def test_cls_token_output_and_batch_of_one():
    model = tiny().eval()
    out, = model(torch.randn(1, 3, 50, 70))
    assert out.shape == (1, 48)  # no squeeze of the batch dimension (an official-code bug)


def test_cls_token_attends_in_dense_mode():
    """The cls token is dropped from the maps but still takes part in attention."""
    model = randomize_norms(tiny(out_type='featmap', out_indices=(2,))).eval()
    x = torch.randn(2, 3, 64, 64)
    before = model(x)[0]
    with torch.no_grad():
        model.stages[2].cls_token.add_(1.0)
    after = model(x)[0]
    assert not torch.allclose(before, after)


def test_invalid_settings_fail_clearly():
    with pytest.raises(ValueError, match='unknown CvT arch'):
        CvT(arch='99')
    with pytest.raises(ValueError, match='keys'):
        CvT(arch=dict(embed_dims=[8]))
    with pytest.raises(ValueError, match='cls_token'):
        tiny(out_indices=(0, 2))
    with pytest.raises(ValueError, match='out_type'):
        tiny(out_type='raw')
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny(frozen_stages=4)
    with pytest.raises(ValueError, match='attn_method'):
        tiny(attn_method='conv')


def test_drop_path_schedules():
    # official: per stage, rising linearly within the stage
    assert stage_drop_path_rates([0., 0., 0.1], [1, 2, 3]) == [
        [0.], [0., 0.], pytest.approx([0., 0.05, 0.1])]
    # float: rising over the whole network (Swin convention)
    rates = stage_drop_path_rates(0.2, [1, 1, 3])
    assert rates[0] == [0.] and rates[2][-1] == pytest.approx(0.2)
    model = CvT(arch='13')
    last_block = model.stages[2].blocks[-1]
    assert last_block.drop_path_rate == pytest.approx(0.1)
    assert model.stages[0].blocks[0].drop_path_rate == 0.


def outputs_and_gradients(model, x, autocast_dtype=None, dtype=torch.float32):
    """Outputs and parameter gradients (as float64) of a training step on ``x``, the model in
    ``dtype`` (a copy), under autocast to ``autocast_dtype`` if given."""
    model = copy.deepcopy(model).to(dtype)
    context = (torch.autocast('cpu', dtype=autocast_dtype) if autocast_dtype
               else torch.autocast('cpu', enabled=False))
    with context:
        outs = model(x.to(dtype))
        loss = sum(o.float().pow(2).mean() for o in outs)
    loss.backward()
    grads = [p.grad.double() for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    return [o.detach().double() for o in outs], grads


def relative_error(actual, expected) -> float:
    """The error of all tensors together, relative to the reference's norm."""
    diff = torch.cat([(a - e).flatten() for a, e in zip(actual, expected)])
    return (diff.norm() / torch.cat([e.flatten() for e in expected]).norm()).item()


def random_biases(model):
    return randomize_norms(randomize_biases(model))


@pytest.mark.parametrize('method', ['dw_bn', 'avg', 'linear'])
def test_projection_methods_train_as_their_float64_reference(method):
    """Each projection method's outputs and gradients in float32 (the CPU kernels on) against
    the plain modules in float64."""
    torch.manual_seed(0)
    model = random_biases(tiny(attn_method=method, out_type='featmap', out_indices=(0, 1, 2)))
    reference = tiny(attn_method=method, out_type='featmap', out_indices=(0, 1, 2),
                     cpu_kernels=False)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 48, 56)
    outs, grads = outputs_and_gradients(model.train(), x)
    ref_outs, ref_grads = outputs_and_gradients(reference.train(), x, dtype=torch.float64)
    assert relative_error(outs, ref_outs) < 1e-5
    assert relative_error(grads, ref_grads) < 1e-5


def test_frozen_stages_freeze_params_and_bn_stats():
    model = tiny(out_type='featmap', out_indices=(0, 1, 2), frozen_stages=2)
    model.train()
    frozen, trainable = model.stages[0], model.stages[2]
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(p.requires_grad for p in model.out_norm1.parameters())
    assert all(p.requires_grad for p in trainable.parameters())
    bn_frozen = model.stages[1].blocks[0].attn.conv_proj_k.bn
    bn_live = model.stages[2].blocks[0].attn.conv_proj_k.bn
    assert not bn_frozen.training and bn_live.training
    stats_frozen = bn_frozen.running_mean.clone()
    stats_live = bn_live.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(stats_frozen, bn_frozen.running_mean)
    assert not torch.equal(stats_live, bn_live.running_mean)


def test_norm_eval_keeps_batchnorm_in_eval():
    model = tiny(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    assert model.stages[0].blocks[0].norm1.training  # LayerNorms are untouched
    stats = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(stats, bns[0].running_mean)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_with_cp_trains_as_without_it(mode):
    """Outputs, gradients, BatchNorm running statistics and ``num_batches_tracked`` after a
    step, in train mode (checkpointing recomputes each block, BatchNorms included, in
    backward) and in eval mode."""
    torch.manual_seed(0)
    model = random_biases(tiny(out_type='featmap', out_indices=(0, 1, 2), drop_path_rate=0.1))
    checkpointed = tiny(out_type='featmap', out_indices=(0, 1, 2), drop_path_rate=0.1,
                        with_cp=True)
    checkpointed.load_state_dict(model.state_dict())
    model.train(mode == 'train'), checkpointed.train(mode == 'train')
    x = torch.randn(2, 3, 64, 64)
    results = []
    for network in (model, checkpointed):
        torch.manual_seed(1)  # the same paths dropped
        outs = network(x)
        sum((o ** 2).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], dict(network.named_parameters()),
                        dict(network.named_buffers())))
    (outs, params, buffers), (outs_cp, params_cp, buffers_cp) = results
    for a, b in zip(outs, outs_cp):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for name, param in params.items():
        torch.testing.assert_close(params_cp[name].grad, param.grad, rtol=1e-6, atol=1e-7,
                                   msg=name)
    assert buffers.keys() == buffers_cp.keys()
    for name, buffer in buffers.items():
        torch.testing.assert_close(buffers_cp[name], buffer, rtol=0, atol=0, msg=name)
    counts = {b.item() for n, b in buffers_cp.items() if n.endswith('num_batches_tracked')}
    assert counts == ({1} if mode == 'train' else {0})


def test_with_cp_flag_reaches_blocks():
    model = tiny(with_cp=True)
    assert all(block.with_cp for stage in model.stages for block in stage.blocks)


# The error of a training step's outputs and gradients, all together, against float64.
# bfloat16 keeps 8 bits of mantissa, float16 11 and float32 24.
PRECISION_BOUNDS = {torch.float32: 1e-5, torch.bfloat16: 6e-2, torch.float16: 6e-3}


@pytest.mark.parametrize('dtype', list(PRECISION_BOUNDS), ids=str)
def test_training_precisions_against_float64(dtype):
    torch.manual_seed(0)
    model = random_biases(tiny(out_type='featmap', out_indices=(0, 1, 2), drop_path_rate=0.))
    reference = tiny(out_type='featmap', out_indices=(0, 1, 2), drop_path_rate=0.,
                     cpu_kernels=False)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ref_outs, ref_grads = outputs_and_gradients(reference.train(), x, dtype=torch.float64)
    autocast = None if dtype == torch.float32 else dtype
    outs, grads = outputs_and_gradients(model.train(), x, autocast_dtype=autocast)
    assert relative_error(outs, ref_outs) < PRECISION_BOUNDS[dtype]
    assert relative_error(grads, ref_grads) < PRECISION_BOUNDS[dtype]


def test_init_weights_follow_official_scheme():
    model = CvT(arch='13')
    model.init_weights()
    linear = model.stages[2].blocks[0].attn.proj_q
    assert linear.bias.abs().max() == 0
    assert 0.015 < linear.weight.std().item() < 0.025
    cls = model.stages[2].cls_token
    assert cls.abs().sum() > 0 and cls.std() < 0.05
    ln = model.stages[1].blocks[0].norm1
    assert torch.equal(ln.weight, torch.ones_like(ln.weight))


def test_switch_to_deploy_keeps_outputs():
    model = randomize_norms(tiny(out_type='featmap', out_indices=(0, 1, 2))).eval()
    x = torch.randn(2, 3, 72, 56)
    expected = model(x)
    model.switch_to_deploy()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for a, b in zip(expected, model(x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_builds_from_each_task_registry(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='CvT', arch=FAST_TEST_ARCH, out_type='featmap',
                                out_indices=(0, 1, 2)))
    assert isinstance(model, CvT)
    assert len(model(torch.randn(2, 3, 64, 64))) == 3


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('with_cls_token', [False, True])
def test_token_maps_reach_convs_channels_last(batch, with_cls_token):
    """Convs take the token view as channels-last and return channels-last (no NCHW copies).

    A view built by transpose + reshape gave a batch of one an arbitrary batch stride, which
    made PyTorch's layout heuristic pick NCHW: every conv copied its input and its output.
    """
    import torch.nn.functional as F

    from cvt_mm.models.backbones.cvt import ConvAttention, tokens_to_map
    hw_shape = (5, 7)
    tokens = torch.randn(batch, int(with_cls_token) + 35, 16)
    feature_map = tokens_to_map(tokens[:, int(with_cls_token):], hw_shape)
    assert torch.equal(feature_map.flatten(2).transpose(1, 2), tokens[:, int(with_cls_token):])
    weight = torch.randn(16, 1, 3, 3)
    out = F.conv2d(feature_map.contiguous(memory_format=torch.channels_last), weight,
                   padding=1, groups=16)
    assert out.is_contiguous(memory_format=torch.channels_last)
    if batch == 1 or not with_cls_token:  # no copy needed at all
        assert feature_map.is_contiguous(memory_format=torch.channels_last)
        assert F.conv2d(feature_map, weight, padding=1, groups=16).is_contiguous(
            memory_format=torch.channels_last)
    attn = ConvAttention(16, 2, with_cls_token).eval()
    with torch.no_grad():
        assert attn(tokens, hw_shape).shape == tokens.shape


def test_per_stage_kv_stride_keeps_the_checkpoint_and_shortens_the_keys():
    default = tiny(out_type='featmap', out_indices=(0, 1, 2)).eval()
    fast = tiny(out_type='featmap', out_indices=(0, 1, 2), stride_kv=(4, 2, 2)).eval()
    fast.load_state_dict(default.state_dict(), strict=True)  # the same parameters
    keys = {}
    fast.stages[0].blocks[0].attn.conv_proj_k.register_forward_hook(
        lambda module, args, output: keys.update(shape=tuple(output.shape[2:])))
    x = torch.randn(1, 3, 128, 96)
    expected, outputs = default(x), fast(x)
    assert [o.shape for o in outputs] == [o.shape for o in expected]
    assert keys['shape'] == (8, 6)  # the 32x24 stride-4 map, keys at stride 4 again
    assert not torch.allclose(outputs[0], expected[0])
    with pytest.raises(ValueError, match='stride_kv has 2 entries'):
        tiny(stride_kv=(4, 2))


@pytest.mark.parametrize('method', ['dw_bn', 'avg', 'linear'])
@pytest.mark.parametrize('stride_kv', [2, 3, 4])
def test_key_map_size_is_the_shape_of_the_projected_keys(method, stride_kv):
    from cvt_mm.models.backbones.cvt import ConvAttention, map_to_tokens, tokens_to_map

    attn = ConvAttention(8, 1, False, method=method, stride_kv=stride_kv).eval()
    for hw_shape in [(1, 1), (5, 7), (8, 8), (13, 6), (40, 41)]:
        feature_map = tokens_to_map(torch.randn(1, hw_shape[0] * hw_shape[1], 8), hw_shape)
        keys = (map_to_tokens(feature_map) if attn.conv_proj_k is None
                else attn.conv_proj_k(feature_map))
        expected = hw_shape if attn.conv_proj_k is None else tuple(keys.shape[2:])
        assert key_map_size(attn, hw_shape) == expected, (method, stride_kv, hw_shape)
