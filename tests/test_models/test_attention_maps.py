"""Attention maps for chosen queries (cvt_mm.visualization) against the full attention matrix
computed explicitly, and against the attention output the backbone itself computes."""
import numpy as np
import pytest
import torch

from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms
from cvt_mm.visualization import (
    attention_rollout,
    attention_weights,
    capture_attention_inputs,
    key_map_size,
    query_index,
    visualize_attention,
)

INPUT_SHAPE = (2, 3, 61, 47)  # odd sizes: uneven strided key grids


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(0)
    model = CvT(arch=FAST_TEST_ARCH, out_type='featmap', out_indices=(0, 1, 2))
    model.init_weights()
    randomize_biases(model)
    return randomize_norms(model).eval()


@pytest.fixture(scope='module')
def captured(backbone):
    blocks = [(stage, block) for stage, depth in enumerate(FAST_TEST_ARCH['depths'])
              for block in range(depth)]
    with capture_attention_inputs(backbone, blocks) as inputs, torch.no_grad():
        backbone(torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(1)))
    return inputs


def explicit_qkv(attn, tokens, hw_shape):
    """Q, K, V of all tokens through the block's own layers, one projection at a time."""
    cls_token = tokens[:, :1] if attn.with_cls_token else None
    spatial = tokens[:, 1:] if attn.with_cls_token else tokens
    feature_map = spatial.transpose(1, 2).reshape(tokens.shape[0], -1, *hw_shape)
    out = []
    for conv, linear in ((attn.conv_proj_q, attn.proj_q), (attn.conv_proj_k, attn.proj_k),
                         (attn.conv_proj_v, attn.proj_v)):
        projected = conv(feature_map).flatten(2).transpose(1, 2)
        if cls_token is not None:
            projected = torch.cat((cls_token, projected), dim=1)
        out.append(linear(projected))
    return out


def split_heads(tokens, heads):
    batch, length, channels = tokens.shape
    return tokens.reshape(batch, length, heads, channels // heads).permute(0, 2, 1, 3)


def explicit_attention(attn, tokens, hw_shape):
    """softmax(Q K^T * embed_dims ** -0.5) per head, (B, heads, L, keys), and V split."""
    q, k, v = explicit_qkv(attn, tokens, hw_shape)
    heads = attn.num_heads
    logits = split_heads(q, heads) @ split_heads(k, heads).transpose(-2, -1)
    return torch.softmax(logits * q.shape[-1] ** -0.5, dim=-1), split_heads(v, heads)


@pytest.mark.parametrize('stage,block', [(0, 0), (1, 1), (2, 0), (2, 2)])
def test_weights_equal_the_explicit_softmax(backbone, captured, stage, block):
    attn = backbone.stages[stage].blocks[block].attn
    tokens, hw_shape = captured[(stage, block)]
    with torch.no_grad():
        full, _ = explicit_attention(attn, tokens, hw_shape)
    queries = torch.tensor([0, 5, tokens.shape[1] // 2, tokens.shape[1] - 1])
    weights = attention_weights(attn, tokens, hw_shape, queries)
    assert weights.shape == full[:, :, queries].shape
    assert full.shape[-1] == int(attn.with_cls_token) + np.prod(key_map_size(attn, hw_shape))
    torch.testing.assert_close(weights, full[:, :, queries], atol=1e-5, rtol=0)


@pytest.mark.parametrize('stage', [0, 1, 2])
def test_weights_reproduce_the_blocks_attention_output(backbone, captured, stage):
    """Weights of every query times V, through the output projection, give what the block's
    attention (scaled_dot_product_attention, fused k/v projection) returns."""
    attn = backbone.stages[stage].blocks[0].attn
    assert_weights_reproduce_output(attn, *captured[(stage, 0)])


def assert_weights_reproduce_output(attn, tokens, hw_shape):
    """Every query's weights times V, through the output projection, equal the block's
    attention output; returns the weights."""
    with torch.no_grad():
        weights = attention_weights(attn, tokens, hw_shape, torch.arange(tokens.shape[1]))
        _, v = explicit_attention(attn, tokens, hw_shape)
        recomputed = attn.proj((weights @ v).transpose(1, 2).flatten(2))
        actual = attn(tokens, hw_shape)
    torch.testing.assert_close(recomputed, actual, atol=1e-5, rtol=0)
    return weights


def explicit_rollout(attn_modules, captured_inputs, query):
    """r <- r (0.5 A M + 0.5 I) with full matrices: A (tokens x keys), head-averaged; M (keys x
    tokens) spreading each key evenly over the query cells nearest to it."""
    tokens, hw_shape = captured_inputs[-1]
    relevance = torch.zeros(tokens.shape[:2])
    relevance[:, query] = 1
    for attn, (tokens, hw_shape) in zip(reversed(attn_modules), reversed(captured_inputs)):
        full, _ = explicit_attention(attn, tokens, hw_shape)
        key_h, key_w = key_map_size(attn, hw_shape)
        offset = int(attn.with_cls_token)
        spread = torch.zeros(offset + key_h * key_w, tokens.shape[1])
        if offset:
            spread[0, 0] = 1
        owner = {}
        for y in range(hw_shape[0]):
            for x in range(hw_shape[1]):
                key = (min(int(y * key_h / hw_shape[0]), key_h - 1),
                       min(int(x * key_w / hw_shape[1]), key_w - 1))
                owner.setdefault(key, []).append(offset + y * hw_shape[1] + x)
        for (ky, kx), cells in owner.items():
            spread[offset + ky * key_w + kx, cells] = 1 / len(cells)
        mixed = full.mean(1) @ spread  # (B, tokens, tokens)
        relevance = 0.5 * relevance + 0.5 * (relevance[:, None] @ mixed)[:, 0]
    return relevance


@pytest.mark.parametrize('stage,query', [(1, 7), (2, 0), (2, 11)])
def test_rollout_equals_the_product_of_full_matrices(backbone, captured, stage, query):
    depth = FAST_TEST_ARCH['depths'][stage]
    attn_modules = [backbone.stages[stage].blocks[i].attn for i in range(depth)]
    inputs = [captured[(stage, i)] for i in range(depth)]
    with torch.no_grad():
        expected = explicit_rollout(attn_modules, inputs, query)
    # Chunks of 5 rows: the chunked r A must add up to the whole.
    actual = attention_rollout(backbone, captured, stage, depth - 1, query, chunk_rows=5)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.sum(1), torch.ones(INPUT_SHAPE[0]))


def test_query_index_and_cls_only_where_there_is_one(backbone):
    first, last = backbone.stages[0].blocks[0].attn, backbone.stages[2].blocks[0].attn
    assert query_index(first, (4, 5), 2, 3) == 3 * 5 + 2
    assert query_index(last, (4, 5), 2, 3) == 1 + 3 * 5 + 2
    assert query_index(last, (4, 5)) == 0
    with pytest.raises(ValueError, match='no cls token'):
        query_index(first, (4, 5))
    with pytest.raises(ValueError, match='outside'):
        query_index(first, (4, 5), 5, 0)


@pytest.mark.parametrize('options', [dict(stage=0, query_xy=(10, 20)),
                                     dict(stage=2, cls=True),
                                     dict(stage=1, rollout=True, head=None)])
def test_visualize_attention_draws_a_figure(backbone, tmp_path, options):
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    preprocessor = torch.nn.Module()  # no normalisation: only the drawing is tested here
    out_file = tmp_path / 'attention.png'
    info = visualize_attention(backbone, image, preprocessor, str(out_file), **options)
    assert out_file.stat().st_size > 1000
    assert out_file.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert info['stage'] == options['stage'] and info['input_size'] == (70, 90)


@pytest.mark.parametrize('pool_kv', [1, 2])
def test_windowed_blocks_weights_reproduce_their_attention_output(backbone, captured, pool_kv):
    """In a windowed block each query's weights cover its own window's keys only, and times V
    they give what the block's windowed attention returns; also with pooled keys."""
    windowed = CvT(arch=FAST_TEST_ARCH, out_type='featmap', out_indices=(0, 1, 2),
                   window_size=(8, 4 * pool_kv, 0), pool_kv=pool_kv)
    windowed.load_state_dict(backbone.state_dict())
    attn = windowed.eval().stages[0].blocks[0].attn
    tokens, hw_shape = captured[(0, 0)]  # a 15x12 map: 2x2 windows, padded at the edges
    assert max(hw_shape) > attn.window_size
    weights = assert_weights_reproduce_output(attn, tokens, hw_shape)
    key_w = key_map_size(attn, hw_shape)[1]
    # The query at (0, 0) sees the keys of the top-left window (4x4, pooled 2x2), nothing else.
    side = 4 // pool_kv
    seen = weights[0, 0, 0].view(-1, key_w) > 0
    assert seen[:side, :side].all() and seen.sum() == side * side
