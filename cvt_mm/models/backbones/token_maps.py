"""Token sequences as maps and maps as windows: the reshapes between CvT's two views of a stage,
attention within windows of the map, and the memory layouts of the parameters that meet them.

The reshapes export: every size is read from the tensor at run time (no Python branch on a size,
no op whose sizes the TorchScript ONNX exporter freezes), so an exported graph with dynamic axes
runs at any input size.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn

HWShape = Tuple[int, int]


def tokens_to_map(tokens: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) view.

    The view is channels-last in memory, which convolutions consume without a copy. Split and
    permute rather than transpose and reshape: for a batch of one, reshape may give the batch
    dimension any stride, and PyTorch's layout heuristic (``suggest_memory_format``) then
    takes the map for NCHW, so every conv copied its input to NCHW and returned NCHW.

    ``view`` with the sizes spelled out, not ``unflatten`` (the same view): the TorchScript ONNX
    exporter writes ``unflatten`` with a ``Mod`` its shape inference cannot follow, falls back
    to the traced sizes and folds every later ``Shape`` into a constant, so that a graph with
    dynamic axes only runs at the traced size.
    """
    return tokens.view(tokens.shape[0], hw_shape[0], hw_shape[1], -1).permute(0, 3, 1, 2)


def map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return feature_map.flatten(2).transpose(1, 2)


def zero_pad(x: torch.Tensor, dim: int, size) -> torch.Tensor:
    """``x`` zero-padded at the end of ``dim`` to ``size``. A concatenation rather than
    ``F.pad``, whose pad amounts the TorchScript ONNX exporter freezes at the traced values."""
    shape = list(x.shape)
    shape[dim] = size - shape[dim]
    return torch.cat((x, x.new_zeros(shape)), dim)


def partition_windows(tokens: torch.Tensor, hw_shape: HWShape, window: int, rows: int,
                      cols: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B*rows*cols, window*window, C): the map zero-padded at the
    bottom and right to rows x cols windows, the windows in row-major order per image."""
    batch, _, channels = tokens.shape
    height, width = hw_shape
    x = tokens.view(batch, height, width, channels)
    x = zero_pad(zero_pad(x, 1, rows * window), 2, cols * window)
    x = x.view(batch, rows, window, cols, window, channels).transpose(2, 3)
    return x.reshape(batch * rows * cols, window * window, channels)


def merge_windows(windows: torch.Tensor, hw_shape: HWShape, window: int, rows: int,
                  cols: int) -> torch.Tensor:
    """The inverse of :func:`partition_windows`, the padding cropped: (B, H*W, C)."""
    channels = windows.shape[-1]
    x = windows.view(-1, rows, cols, window, window, channels).transpose(2, 3)
    x = x.reshape(-1, rows * window, cols * window, channels)
    height, width = hw_shape
    return x[:, :height, :width].reshape(-1, height * width, channels)


def check_window_size(window_size: int, stride_kv: int, pool_kv: int, method: str,
                      with_cls_token: bool, stride_q: int) -> None:
    """Raises ValueError naming what an attention with these settings lacks for
    :func:`window_attention`."""
    key_stride = stride_kv * pool_kv
    needs = {f'a positive multiple of the key stride {key_stride} (stride_kv x pool_kv)':
             window_size > 0 and window_size % key_stride == 0,
             "attn_method 'dw_bn'": method == 'dw_bn',
             'no cls token': not with_cls_token, 'stride_q 1': stride_q == 1}
    unmet = [need for need, met in needs.items() if not met]
    if unmet:
        raise ValueError(f'window_size {window_size} needs ' + ', '.join(unmet) +
                         f' (stride_kv {stride_kv}, attn_method {method!r}, '
                         f'with_cls_token {with_cls_token}, stride_q {stride_q})')


def window_attention(attend: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor, hw_shape: HWShape, kv_shape: HWShape, window_size: int,
                     key_stride: int) -> torch.Tensor:
    """``attend(q, k, v, mask)`` within windows, as ViTDet's windowed blocks: query window
    (i, j) covers rows and columns [i*w, (i+1)*w) x [j*w, (j+1)*w) of the query map and
    attends to the k/v positions of the same region, [i*w/s, (i+1)*w/s) x ... of the k/v map
    (w = ``window_size``, s = ``key_stride``). Both maps are padded to whole windows; padded
    keys are masked out, padded queries cropped. Every window holds a real query and so a real
    key. (B, L, C) q, k, v in the maps' row-major order; (B, H*W, C) out."""
    kv_window = window_size // key_stride
    # Ceiling division on non-negative numbers only: ONNX's integer Div truncates.
    rows, cols = ((size + window_size - 1) // window_size for size in hw_shape)
    q = partition_windows(q, hw_shape, window_size, rows, cols)
    k, v = (partition_windows(t, kv_shape, kv_window, rows, cols) for t in (k, v))
    valid = k.new_ones(1, kv_shape[0] * kv_shape[1], 1)
    valid = partition_windows(valid, kv_shape, kv_window, rows, cols)[..., 0] > 0
    # (B * windows, 1, 1, keys): window n of image b is row b * windows + n.
    mask: Optional[torch.Tensor] = valid.repeat(q.shape[0] // valid.shape[0], 1)[:, None, None]
    out = attend(q, k, v, mask)
    return merge_windows(out, hw_shape, window_size, rows, cols)


def channels_last_parameter(weight: torch.Tensor) -> nn.Parameter:
    """A conv weight as a parameter with channels-last strides. The token maps reach CvT's
    depthwise convs channels-last, and so their weights' gradients come out channels-last; a
    weight with those strides lets DDP's gradient buckets take them without a copy on every
    step (torch warns "Grad strides do not match bucket view strides" otherwise)."""
    weight = weight.detach()
    strides = (weight.shape[2] * weight.shape[3], 1, weight.shape[3], 1)
    return nn.Parameter(torch.empty_strided(weight.shape, strides, dtype=weight.dtype,
                                            device=weight.device).copy_(weight))


def contiguous_gradient(grad: torch.Tensor) -> torch.Tensor:
    """A tensor hook for the cls token: its gradient, summed from a slice of the token
    gradient, keeps that slice's strides, which DDP's gradient buckets would copy on every
    step; this gives it the parameter's own contiguous layout."""
    return grad.clone(memory_format=torch.contiguous_format)
