"""Windowed attention (``window_size``): each query attends to the keys of its own window,
padding masked; the parameters and, on maps within one window, the outputs are global
attention's."""
import pytest
import torch
from helpers import fast_test_dense_backbone

from cvt_mm.models.backbones.cvt import ConvAttention
from cvt_mm.testing import randomize_norms
from cvt_mm.visualization.attention import key_map_size


def windowed_reference(attn: ConvAttention, x: torch.Tensor, hw_shape, window: int):
    """Per query, softmax over the keys of its window only, written out query by query."""
    _, tokens, feature_map = attn.split_tokens(x, hw_shape)
    q = attn.project(attn.conv_proj_q, attn.proj_q, tokens, feature_map, None)
    k = attn.project(attn.conv_proj_k, attn.proj_k, tokens, feature_map, None)
    v = attn.project(attn.conv_proj_v, attn.proj_v, tokens, feature_map, None)
    (height, width), (kv_height, kv_width) = hw_shape, key_map_size(attn, hw_shape)
    kv_window = window // attn.key_stride
    batch, length, channels = q.shape
    heads = attn.num_heads
    q, k, v = (t.view(batch, -1, heads, channels // heads) for t in (q, k, v))
    out = torch.zeros_like(q)
    for row in range(height):
        for col in range(width):
            i, j = row // window, col // window
            keys = [a * kv_width + b
                    for a in range(i * kv_window, min((i + 1) * kv_window, kv_height))
                    for b in range(j * kv_window, min((j + 1) * kv_window, kv_width))]
            query = q[:, row * width + col]
            logits = torch.einsum('bhd,bnhd->bhn', query, k[:, keys]) * attn.scale
            out[:, row * width + col] = torch.einsum('bhn,bnhd->bhd', logits.softmax(-1),
                                                     v[:, keys])
    return attn.proj(out.flatten(2))


@pytest.mark.parametrize('hw_shape,window,stride_kv,pool_kv,heads', [
    ((10, 14), 4, 2, 1, 2),  # padded on both sides
    ((8, 12), 4, 2, 1, 1),  # whole windows, no mask
    ((9, 7), 4, 4, 1, 1),  # keys at stride 4, one key row per window
    ((13, 10), 8, 2, 2, 1),  # pooled keys, partial pooling blocks at the edges
])
def test_windowed_attention_equals_attention_within_each_window(hw_shape, window, stride_kv,
                                                                pool_kv, heads):
    torch.manual_seed(0)
    attn = ConvAttention(8, heads, False, stride_kv=stride_kv, window_size=window,
                         pool_kv=pool_kv)
    randomize_norms(attn).eval()
    x = torch.randn(2, hw_shape[0] * hw_shape[1], 8)
    with torch.no_grad():
        expected = windowed_reference(attn, x, hw_shape, window)
        out = attn(x, hw_shape)
        attn.window_size = 0
        global_out = attn(x, hw_shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, global_out, atol=1e-3)


def test_windows_keep_the_checkpoint_and_equal_global_attention_within_one_window():
    default = fast_test_dense_backbone().eval()
    windowed = fast_test_dense_backbone(window_size=(8, 4, 0)).eval()
    windowed.load_state_dict(default.state_dict(), strict=True)
    with torch.no_grad():
        # 32x24 input: stage maps 8x6 and 4x3, each within one window.
        small = torch.randn(1, 3, 32, 24)
        for a, b in zip(windowed(small), default(small)):
            torch.testing.assert_close(a, b)
        large = torch.randn(2, 3, 96, 128)
        outputs, expected = windowed(large), default(large)
    assert [o.shape for o in outputs] == [o.shape for o in expected]
    assert not torch.allclose(outputs[0], expected[0], atol=1e-3)


def test_windowed_backbone_trains():
    model = fast_test_dense_backbone(window_size=(8, 4, 0)).train()
    outputs = model(torch.randn(2, 3, 80, 112))
    sum(o.pow(2).mean() for o in outputs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    q_weight = model.stages[0].blocks[0].attn.proj_q.weight
    assert q_weight.grad.abs().sum() > 0


def test_window_size_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match='stage 2, which has a cls token'):
        fast_test_dense_backbone(window_size=(8, 4, 4))
    with pytest.raises(ValueError, match='a positive multiple of the key stride 2'):
        fast_test_dense_backbone(window_size=(7, 0, 0))
    with pytest.raises(ValueError, match="attn_method 'dw_bn'"):
        fast_test_dense_backbone(window_size=(8, 0, 0), attn_method='avg')
    with pytest.raises(ValueError, match='window_size has 2 entries'):
        fast_test_dense_backbone(window_size=(8, 4))
