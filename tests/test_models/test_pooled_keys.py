"""Pooled keys (``pool_kv``): k and v are the means of the ``dw_bn`` projections they cover,
the parameters are the official model's, and every code path (train-mode BN, windows, the key
grid's size) agrees with that definition."""
import pytest
import torch
from helpers import fast_test_dense_backbone

from cvt_mm.models.backbones.cvt import ConvAttention, map_to_tokens
from cvt_mm.testing import randomize_norms
from cvt_mm.visualization.attention import key_map_size


def block_means(feature_map: torch.Tensor, pool: int) -> torch.Tensor:
    """Means over pool x pool blocks, the last row and column of blocks cut at the map's
    edge, written out block by block."""
    height, width = feature_map.shape[2:]
    rows = []
    for top in range(0, height, pool):
        rows.append(torch.stack([feature_map[:, :, top:top + pool, left:left + pool].mean((2, 3))
                                 for left in range(0, width, pool)], dim=-1))
    return torch.stack(rows, dim=-2)


def pooled_reference(attn: ConvAttention, x: torch.Tensor, hw_shape, pool: int):
    """Attention over the block means of the unpooled projections, softmax written out."""
    cls_token, tokens, feature_map = attn.split_tokens(x, hw_shape)
    q = attn.project(attn.conv_proj_q, attn.proj_q, tokens, feature_map, cls_token)

    def pooled(conv_proj, linear):
        unpooled = conv_proj.bn(conv_proj.conv(feature_map))
        keys = map_to_tokens(block_means(unpooled, pool))
        if cls_token is not None:
            keys = torch.cat((cls_token, keys), dim=1)
        return linear(keys)

    k, v = pooled(attn.conv_proj_k, attn.proj_k), pooled(attn.conv_proj_v, attn.proj_v)
    heads = attn.num_heads
    q, k, v = (t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    weights = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
    return attn.proj((weights @ v).transpose(1, 2).flatten(2))


@pytest.mark.parametrize('hw_shape,stride_kv,pool,with_cls_token', [
    ((9, 7), 2, 2, False),  # 5x4 projections: partial blocks on both edges
    ((12, 16), 1, 4, True),  # whole blocks, cls token in front of the pooled keys
    ((11, 10), 2, 3, False),  # 6x5 projections, pooling by 3
])
def test_pooled_keys_are_the_means_of_the_projections_they_cover(hw_shape, stride_kv, pool,
                                                                 with_cls_token):
    torch.manual_seed(0)
    attn = ConvAttention(8, 2, with_cls_token, stride_kv=stride_kv, pool_kv=pool)
    randomize_norms(attn).eval()
    x = torch.randn(2, int(with_cls_token) + hw_shape[0] * hw_shape[1], 8)
    with torch.no_grad():
        expected = pooled_reference(attn, x, hw_shape, pool)
        out = attn(x, hw_shape)
        unpooled_attn = ConvAttention(8, 2, with_cls_token, stride_kv=stride_kv)
        unpooled_attn.load_state_dict(attn.state_dict())
        unpooled = unpooled_attn.eval()(x, hw_shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, unpooled, atol=1e-3)


def test_key_map_size_is_the_shape_of_the_pooled_keys():
    for stride_kv, pool in [(1, 2), (2, 2), (2, 4), (4, 3)]:
        attn = ConvAttention(8, 1, False, stride_kv=stride_kv, pool_kv=pool).eval()
        for hw_shape in [(1, 1), (5, 7), (8, 8), (13, 6), (40, 41)]:
            keys = attn.conv_proj_k(torch.randn(1, 8, *hw_shape))
            assert key_map_size(attn, hw_shape) == tuple(keys.shape[2:]), (stride_kv, pool,
                                                                            hw_shape)


def test_pooled_keys_keep_the_checkpoint_and_train():
    default = fast_test_dense_backbone().eval()
    with torch.no_grad():  # peaked attention: with the init's tiny logits any keys average out
        for name, param in default.named_parameters():
            if '.attn.proj_' in name:
                param.normal_(0, 0.5)
    pooled = fast_test_dense_backbone(pool_kv=(2, 2, 1))
    pooled.load_state_dict(default.state_dict(), strict=True)
    image = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        outputs, expected = pooled.eval()(image), default(image)
    assert [o.shape for o in outputs] == [o.shape for o in expected]
    assert not torch.allclose(outputs[0], expected[0], atol=1e-3)
    torch.testing.assert_close(outputs[2], pooled(image)[2])  # deterministic in eval mode

    pooled.train()
    sum(o.pow(2).mean() for o in pooled(image)).backward()
    conv_weight = pooled.stages[0].blocks[0].attn.conv_proj_k.conv.weight
    assert conv_weight.grad is not None and conv_weight.grad.abs().sum() > 0


def test_deployed_model_keeps_the_pooling():
    model = fast_test_dense_backbone(pool_kv=2).eval()
    image = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        expected = model(image)
        model.switch_to_deploy()
        outputs = model(image)
    for a, b in zip(outputs, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pool_kv_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="pool_kv 2 needs attn_method 'dw_bn', got 'avg'"):
        fast_test_dense_backbone(pool_kv=2, attn_method='avg')
    with pytest.raises(ValueError, match='pool_kv must be a positive int, got 0'):
        fast_test_dense_backbone(pool_kv=0)
    with pytest.raises(ValueError, match=r'a positive multiple of the key stride 4 '):
        fast_test_dense_backbone(pool_kv=(2, 1, 1), window_size=(6, 0, 0))
    with pytest.raises(ValueError, match='pool_kv has 2 entries'):
        fast_test_dense_backbone(pool_kv=(2, 2))
