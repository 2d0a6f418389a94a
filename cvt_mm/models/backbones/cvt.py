"""CvT: Introducing Convolutions to Vision Transformers (Wu et al., ICCV 2021).

One backbone serves classification (``out_type='cls_token'``: the last stage's cls token after
a LayerNorm, as the official classifier feeds its head) and dense prediction (``'featmap'``:
NCHW maps at strides 4/8/16, each through its own LayerNorm as in mmdet's Swin; the cls token
still attends and is attended to, and is only dropped from the map).

The arithmetic follows microsoft/CvT ``lib/models/cls_cvt.py`` (attention scale over the whole
embedding width, QuickGELU, cls token bypassing the conv projections); attention runs through
``scaled_dot_product_attention`` so no attention matrix is materialised. The file reads in the
paper's order: token embedding, ``dw_bn`` projection, attention, MLP, block, stage, model. On
the CPU, parts of the attention and the MLP run through :mod:`.cpu_kernels` (one switch,
``CvT(cpu_kernels=...)``); the token-map reshapes are in :mod:`.token_maps`.
"""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from cvt_mm.registry import build_activation, register_activation, register_backbone

from . import cpu_kernels, token_maps
from .cpu_kernels import CpuKernels, cpu_kernels_apply
from .deprecations import drop_deprecated_arguments
from .layers import (
    add_dropped_path,
    checkpoint_keeping_batch_norm_statistics,
    stage_drop_path_rates,
)
from .token_maps import HWShape, map_to_tokens, tokens_to_map

# A value for every stage, or one per stage.
PerStage = Union[int, Sequence[int]]


class ConvTokenEmbedding(BaseModule):
    """Strided convolution (with bias) followed by LayerNorm over channels."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int,
                 padding: int, norm_cfg: dict, init_cfg=None):
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size, stride, padding)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HWShape]:
        x = self.proj(x)
        hw_shape = tuple(x.shape[2:])
        return self.norm(map_to_tokens(x)), hw_shape


class DepthwiseConvBN(nn.Sequential):
    """The ``dw_bn`` projection: depthwise conv without bias, BatchNorm, then ``pool`` x
    ``pool`` average pooling (an identity for ``pool`` 1; no parameters, so any ``pool`` loads
    the same state dict). Each output is the mean of the projections it covers (partial windows
    at the edges average their real positions), where a conv stride of ``stride * pool`` would
    skip all but one in ``pool`` squared. :meth:`fuse_bn` folds the BN into the conv."""

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int,
                 pool: int = 1):
        conv = nn.Conv2d(channels, channels, kernel_size, stride, padding, groups=channels,
                         bias=False)
        conv.weight = token_maps.channels_last_parameter(conv.weight)
        pooling = (nn.AvgPool2d(pool, ceil_mode=True, count_include_pad=False) if pool > 1
                   else nn.Identity())
        super().__init__(OrderedDict(conv=conv, bn=nn.BatchNorm2d(channels), pool=pooling))

    @torch.no_grad()
    def fuse_bn(self) -> None:
        """Fold the BN's running statistics and affine parameters into the conv."""
        if isinstance(self.bn, nn.Identity):
            return
        conv, bn = self.conv, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, groups=conv.groups, bias=True).to(conv.weight)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


def build_conv_projection(method: str, channels: int, kernel_size: int, stride: int,
                          padding: int, pool: int = 1) -> Optional[nn.Module]:
    """The spatial projection applied to the token map before q/k/v's linear layers."""
    if method == 'dw_bn':
        return DepthwiseConvBN(channels, kernel_size, stride, padding, pool)
    if method == 'avg':
        return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=True)
    if method == 'linear':
        return None
    raise ValueError(f"attn_method must be 'dw_bn', 'avg' or 'linear', got {method!r}")


class ConvAttention(BaseModule):
    """Multi-head attention whose q, k, v come from convolutional projections (Sec. 3.2).

    With ``map`` the (H, W) token map and ``[cls, .]`` the cls token prepended (if any)::

        q = proj_q([cls, tokens(conv_proj_q(map))])     (likewise k and v, at stride_kv)
        out = proj(softmax(q k^T * scale) v)             (per head, scale = embed_dims ** -0.5)

    Args:
        embed_dims (int): The token width (input and output).
        num_heads (int): The number of attention heads.
        with_cls_token (bool): The first token is a cls token; it skips the spatial
            projections and is prepended to q, k and v.
        method, kernel_size, stride_q, stride_kv, padding_q, padding_kv, qkv_bias, window_size,
            pool_kv: As ``CvT``'s ``attn_method``, ``kernel_size``, ... for one stage.
        attn_drop (float): The dropout rate of the attention weights. Defaults to 0.
        proj_drop (float): The dropout rate after the output projection. Defaults to 0.
        cpu_kernels (CpuKernels, optional): The CPU kernels' settings; None runs the plain
            module everywhere. Defaults to None.
        init_cfg (dict, optional): The initialization config. Defaults to None.
    """

    def __init__(self, embed_dims: int, num_heads: int, with_cls_token: bool,
                 method: str = 'dw_bn', kernel_size: int = 3, stride_q: int = 1,
                 stride_kv: int = 2, padding_q: int = 1, padding_kv: int = 1,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 window_size: int = 0, pool_kv: int = 1,
                 cpu_kernels: Optional[CpuKernels] = None, init_cfg=None):
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        if not (isinstance(pool_kv, int) and pool_kv >= 1):
            raise ValueError(f'pool_kv must be a positive int, got {pool_kv!r}')
        if pool_kv != 1 and method != 'dw_bn':
            raise ValueError(f"pool_kv {pool_kv} needs attn_method 'dw_bn', got {method!r}")
        if window_size:
            token_maps.check_window_size(window_size, stride_kv, pool_kv, method,
                                         with_cls_token, stride_q)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.with_cls_token = with_cls_token
        self.window_size = window_size
        self.key_stride = stride_kv * pool_kv  # the spacing of the keys on the query map
        # The official code scales by the full width, not the head width.
        self.scale = embed_dims ** -0.5
        self.attn_drop = attn_drop
        # The official 'avg' method leaves q unprojected.
        self.conv_proj_q = build_conv_projection('linear' if method == 'avg' else method,
                                                 embed_dims, kernel_size, stride_q, padding_q)
        self.conv_proj_k = build_conv_projection(method, embed_dims, kernel_size, stride_kv,
                                                 padding_kv, pool_kv)
        self.conv_proj_v = build_conv_projection(method, embed_dims, kernel_size, stride_kv,
                                                 padding_kv, pool_kv)
        self.proj_q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_k = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.cpu_kernels = cpu_kernels

    def forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
        cls_token, tokens, feature_map = self.split_tokens(x, hw_shape)
        q = self.project(self.conv_proj_q, self.proj_q, tokens, feature_map, cls_token)
        k, v, kv_shape = self.project_kv(feature_map, cls_token)
        # Under ONNX export every size takes the windowed path: a branch on the traced size
        # would be frozen into the graph.
        if self.window_size and (torch.onnx.is_in_onnx_export()
                                 or max(hw_shape) > self.window_size):
            out = token_maps.window_attention(self.attention, q, k, v, hw_shape, kv_shape,
                                              self.window_size, self.key_stride)
        else:
            out = self.attention(q, k, v)
        return self.proj_drop(self.proj(out))

    def split_tokens(self, x: torch.Tensor, hw_shape: HWShape):
        """The attention's input as (cls token or None, spatial tokens, their NCHW map)."""
        cls_token = None
        if self.with_cls_token:
            cls_token, x = x[:, :1], x[:, 1:]
        # The token view is channels-last; slicing the cls token off a batch > 1 breaks
        # that layout, and each conv would copy its input: copy once for all of them.
        feature_map = tokens_to_map(x, hw_shape).contiguous(memory_format=torch.channels_last)
        return cls_token, x, feature_map

    @staticmethod
    def project(conv_proj: Optional[nn.Module], linear: nn.Linear, tokens: torch.Tensor,
                feature_map: torch.Tensor, cls_token: Optional[torch.Tensor]) -> torch.Tensor:
        """One of q, k, v: the spatial projection of the map (the tokens themselves without
        one), the cls token in front, then the linear projection."""
        projected = tokens if conv_proj is None else map_to_tokens(conv_proj(feature_map))
        if cls_token is not None:
            projected = torch.cat((cls_token, projected), dim=1)
        return linear(projected)

    def project_kv(self, feature_map: torch.Tensor, cls_token: Optional[torch.Tensor]
                   ) -> Tuple[torch.Tensor, torch.Tensor, HWShape]:
        """k and v as :meth:`project` makes them, and the (h, w) of their map."""
        k_map, v_map = (feature_map if conv is None else conv(feature_map)
                        for conv in (self.conv_proj_k, self.conv_proj_v))
        if self.cpu_kernels is not None and cpu_kernels_apply(feature_map):
            k, v = cpu_kernels.project_kv_batched(k_map, v_map, cls_token, self.proj_k, self.proj_v)
        else:
            k, v = (self.project(None, linear, map_to_tokens(projected_map), None, cls_token)
                    for linear, projected_map in ((self.proj_k, k_map), (self.proj_v, v_map)))
        return k, v, tuple(k_map.shape[2:])

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, L, C) q, k, v -> (B, L, C) multi-head attention output; on the CPU in training,
        with the queries in chunks (:func:`.cpu_kernels.attention_in_query_chunks`)."""
        if (mask is None and self.cpu_kernels is not None and q.requires_grad
                and cpu_kernels_apply(q, self.attn_drop if self.training else 0.)):
            return cpu_kernels.attention_in_query_chunks(
                self.multi_head_attention, q, k, v, self.num_heads, self.cpu_kernels.query_chunks)
        return self.multi_head_attention(q, k, v, mask)

    def multi_head_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._split_heads(q), self._split_heads(k), self._split_heads(v), attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0., scale=self.scale)
        # SDPA's output has q's memory layout, (B, L, heads, d): merging the heads is a view.
        return out.transpose(1, 2).flatten(2)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape
        return tokens.view(batch, length, self.num_heads, -1).transpose(1, 2)


@register_activation
class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the official CvT activation (CLIP's approximation of GELU).

    Computed as silu(1.702 x) / 1.702, the same function: autograd then keeps one tensor per
    call instead of two and differentiates it in one fused kernel. The MLP's CPU kernels move
    the two scalings into its linear layers.
    """

    scale = 1.702

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x * self.scale) / self.scale


class Mlp(nn.Sequential):
    """fc1 -> activation -> dropout -> fc2 -> dropout.

    On the CPU with ``cpu_kernels``, it runs ``mlp_chunk_rows`` tokens at a time, so that the
    hidden activations stay in cache (:func:`.cpu_kernels.chunked_mlp`).
    """

    def __init__(self, embed_dims: int, hidden_dims: int, act_cfg: dict, drop: float = 0.,
                 cpu_kernels: Optional[CpuKernels] = None):
        super().__init__(OrderedDict(
            fc1=nn.Linear(embed_dims, hidden_dims), act=build_activation(act_cfg),
            drop1=nn.Dropout(drop), fc2=nn.Linear(hidden_dims, embed_dims),
            drop2=nn.Dropout(drop)))
        self.cpu_kernels = cpu_kernels
        # What the CPU kernels fold into fc1 and fc2; None for other activations.
        self.quick_gelu_scale = self.act.scale if isinstance(self.act, QuickGELU) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cpu_kernels is not None and cpu_kernels_apply(
                x, self.drop1.p if self.training else 0.):
            out = cpu_kernels.chunked_mlp(x, self.fc1, self.act, self.fc2,
                                          self.quick_gelu_scale, self.cpu_kernels.mlp_chunk_rows)
            if out is not None:
                return out
        return super().forward(x)

    @torch.no_grad()
    def fold_quick_gelu(self) -> None:
        """For deployment: QuickGELU's scalings moved into fc1 and fc2, the activation a SiLU
        (the same function, two passes over the hidden activations fewer)."""
        if self.quick_gelu_scale is None:
            return
        scale = self.quick_gelu_scale
        self.fc1.weight.mul_(scale)
        if self.fc1.bias is not None:
            self.fc1.bias.mul_(scale)
        self.fc2.weight.div_(scale)
        self.act, self.quick_gelu_scale = nn.SiLU(), None


class CvTBlock(BaseModule):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, embed_dims: int, num_heads: int, with_cls_token: bool,
                 mlp_ratio: float = 4., drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0., act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5), attn_cfg: Optional[dict] = None,
                 with_cp: bool = False, cpu_kernels: Optional[CpuKernels] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ConvAttention(embed_dims, num_heads, with_cls_token,
                                  attn_drop=attn_drop_rate, proj_drop=drop_rate,
                                  cpu_kernels=cpu_kernels, **(attn_cfg or {}))
        self.drop_path_rate = drop_path_rate  # stochastic depth of both residual branches
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg, drop_rate, cpu_kernels)

    def forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:

        def inner_forward(x):
            x = add_dropped_path(x, self.attn(self.norm1(x), hw_shape), self.drop_path_rate,
                                 self.training)
            return add_dropped_path(x, self.mlp(self.norm2(x)), self.drop_path_rate,
                                    self.training)

        if self.with_cp and x.requires_grad:
            return checkpoint_keeping_batch_norm_statistics(inner_forward, x, self)
        return inner_forward(x)


class CvTStage(BaseModule):
    """Convolutional token embedding, optional cls token, then a stack of CvT blocks."""

    def __init__(self, in_channels: int, embed_dims: int, depth: int, num_heads: int,
                 patch_size: int, patch_stride: int, patch_padding: int, with_cls_token: bool,
                 drop_path_rates: Sequence[float], norm_cfg: dict, block_cfg: dict,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.patch_embed = ConvTokenEmbedding(in_channels, embed_dims, patch_size,
                                              patch_stride, patch_padding, norm_cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims)) if with_cls_token else None
        if self.cls_token is not None:
            self.cls_token.register_hook(token_maps.contiguous_gradient)
        self.blocks = ModuleList([
            CvTBlock(embed_dims, num_heads, with_cls_token, drop_path_rate=rate,
                     norm_cfg=norm_cfg, **block_cfg) for rate in drop_path_rates
        ])

    def forward(self, x: torch.Tensor):
        """NCHW in; (B, H*W, C) tokens, their (H, W) and the cls token (or None) out."""
        tokens, hw_shape = self.patch_embed(x)
        if self.cls_token is not None:
            tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens, hw_shape)
        if self.cls_token is None:
            return tokens, hw_shape, None
        return tokens[:, 1:], hw_shape, tokens[:, :1]


@register_backbone
@drop_deprecated_arguments(
    fuse_kv_conv='has no effect (k and v are projected as without it); remove it')
class CvT(BaseModule):
    """CvT backbone.

    A PyTorch implementation of `CvT: Introducing Convolutions to Vision Transformers
    <https://arxiv.org/abs/2103.15808>`_ (Wu et al., ICCV 2021), modified from the official
    code (https://github.com/microsoft/CvT, ``lib/models/cls_cvt.py``), whose checkpoints it
    loads after conversion (``tools/convert_checkpoint.py``).

    Args:
        arch (str | dict): '13', '21' or 'w24' (:attr:`arch_zoo`), or a dict with one entry
            per stage for:

            - **embed_dims** (List[int]): The token width of each stage.
            - **depths** (List[int]): The number of blocks of each stage.
            - **num_heads** (List[int]): The number of attention heads of each stage.
            - **drop_path_rates** (List[float], optional): Each stage's maximum stochastic
              depth rate, used when ``drop_path_rate`` is None.

            Defaults to '13'.
        in_channels (int): The number of input image channels. Defaults to 3.
        out_type (str): 'cls_token' (the last stage's cls token after a LayerNorm, for
            classification) or 'featmap' (NCHW maps at strides 4, 8, 16). Defaults to
            'cls_token'.
        out_indices (int | Sequence[int]): The stages to output, 0-based, negative from the
            end; 'cls_token' outputs the last stage only. Defaults to -1.
        mlp_ratio (float): The MLP's hidden width over the token width. Defaults to 4.
        qkv_bias (bool): Whether q's, k's and v's linear layers have a bias. Defaults to True.
        with_cls_token (Sequence[bool], optional): Whether each stage carries a cls token;
            None: the last stage only (official). Defaults to None.
        attn_method (str): The spatial projection before q/k/v's linear layers: 'dw_bn'
            (official), 'avg' (q unprojected, k/v average pooled) or 'linear' (none).
            Defaults to 'dw_bn'.
        kernel_size (int): The kernel size of the q/k/v projections. Defaults to 3.
        stride_q (int): The stride of q's projection. Defaults to 1.
        stride_kv (int | Sequence[int]): The stride of k's and v's projections, for all stages
            or one per stage (no weight depends on it). Defaults to 2.
        window_size (int | Sequence[int]): 0 (global attention) or, for all stages or one per
            stage, a window side: on larger maps, attention within non-overlapping windows as
            ViTDet's (:func:`.token_maps.window_attention`; stages without a cls token; no
            weight depends on it). Defaults to 0.
        pool_kv (int | Sequence[int]): Average-pool k's and v's projected maps by this factor,
            for all stages or one per stage ('dw_bn' only; no weight depends on it): 2 makes
            every attention 4x cheaper. Defaults to 1.
        padding_q (int): The padding of q's projection. Defaults to 1.
        padding_kv (int | Sequence[int]): The padding of k's and v's projections, for all
            stages or one per stage. Defaults to 1.
        drop_rate (float): Dropout after the attention and MLP projections. Defaults to 0.
        attn_drop_rate (float): Dropout of the attention weights. Defaults to 0.
        drop_path_rate (float | Sequence[float], optional): Stochastic depth: None takes the
            arch's rates; a float rises linearly over all blocks (mmdet's convention); a
            sequence rises linearly within each stage (official). Defaults to None.
        act_cfg (dict): The MLP activation; ``dict(type='GELU')`` reproduces Hugging Face's
            ``CvtModel``. Defaults to ``dict(type='QuickGELU')`` (official).
        norm_cfg (dict): The token norm layers. Defaults to ``dict(type='LN', eps=1e-5)``.
        out_norm (bool): With 'featmap', a LayerNorm on each output map, as mmdet's Swin.
            Defaults to True.
        frozen_stages (int): Freeze the first ``frozen_stages`` stages (parameters and BN
            statistics). Defaults to 0.
        norm_eval (bool): Keep the BatchNorms in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block: less memory, more compute, the same
            outputs, gradients and BatchNorm statistics. Defaults to False.
        cpu_kernels (bool | dict): On the CPU, let :mod:`.cpu_kernels` stand in for parts of
            the attention and the MLP (the same function, faster); a dict sets them
            (:class:`.cpu_kernels.CpuKernels`); False: the plain modules everywhere. GPUs,
            ``torch.compile``, exports and autocast run the plain modules. Defaults to True.
        init_cfg (dict | List[dict], optional): None gives the official init: trunc-normal
            Linear layers (std 0.02), unit norms, PyTorch's conv init, trunc-normal cls
            tokens. Defaults to None.
    """

    arch_zoo: Dict[str, dict] = {
        '13': dict(embed_dims=[64, 192, 384], depths=[1, 2, 10], num_heads=[1, 3, 6],
                   drop_path_rates=[0., 0., 0.1]),
        '21': dict(embed_dims=[64, 192, 384], depths=[1, 4, 16], num_heads=[1, 3, 6],
                   drop_path_rates=[0., 0., 0.1]),
        'w24': dict(embed_dims=[192, 768, 1024], depths=[2, 2, 20], num_heads=[3, 12, 16],
                    drop_path_rates=[0., 0., 0.3]),
    }
    # Shared by all official variants.
    patch_sizes = (7, 3, 3)
    patch_strides = (4, 2, 2)
    patch_paddings = (2, 1, 1)

    def __init__(self, arch: Union[str, dict] = '13', in_channels: int = 3,
                 out_type: str = 'cls_token', out_indices: Union[int, Sequence[int]] = -1,
                 mlp_ratio: float = 4., qkv_bias: bool = True,
                 with_cls_token: Optional[Sequence[bool]] = None, attn_method: str = 'dw_bn',
                 kernel_size: int = 3, stride_q: int = 1, stride_kv: PerStage = 2,
                 window_size: PerStage = 0, pool_kv: PerStage = 1, padding_q: int = 1,
                 padding_kv: PerStage = 1, drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: Union[None, float, Sequence[float]] = None,
                 act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5), out_norm: bool = True,
                 frozen_stages: int = 0, norm_eval: bool = False, with_cp: bool = False,
                 cpu_kernels: Union[bool, dict] = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if init_cfg is None:
            # The official init: trunc-normal Linear, unit norms; convs keep PyTorch defaults.
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer=['LayerNorm', 'BatchNorm2d'], val=1., bias=0.),
            ]
        super().__init__(init_cfg)
        self.arch_settings = self.parse_arch(arch)
        self.cpu_kernels = CpuKernels.from_argument(cpu_kernels)
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        num_heads = self.arch_settings['num_heads']
        self.num_stages = len(depths)
        self.embed_dims = embed_dims

        if with_cls_token is None:  # the official layout
            with_cls_token = [False] * (self.num_stages - 1) + [True]
        with_cls_token = self._per_stage(list(with_cls_token), 'with_cls_token')
        if out_type not in ('cls_token', 'featmap'):
            raise ValueError(f"out_type must be 'cls_token' or 'featmap', got {out_type!r}")
        self.out_type = out_type
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        self.out_indices = sorted({index % self.num_stages for index in out_indices})
        if any(not -self.num_stages <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices {list(out_indices)} out of range for '
                             f'{self.num_stages} stages')
        if out_type == 'cls_token' and (self.out_indices != [self.num_stages - 1]
                                        or not with_cls_token[-1]):
            raise ValueError("out_type='cls_token' outputs the last stage's cls token: use "
                             "out_indices=-1 with a cls token in the last stage, or "
                             "out_type='featmap'")
        if not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [0, {self.num_stages}], '
                             f'got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        if drop_path_rate is None:
            drop_path_rate = self.arch_settings.get('drop_path_rates', 0.)
        drop_path_rates = stage_drop_path_rates(drop_path_rate, depths)
        stride_kv, padding_kv, window_size, pool_kv = (
            self._per_stage(value, name) for value, name in (
                (stride_kv, 'stride_kv'), (padding_kv, 'padding_kv'),
                (window_size, 'window_size'), (pool_kv, 'pool_kv')))
        for i, window in enumerate(window_size):
            if window and with_cls_token[i]:
                raise ValueError(f'window_size {window} for stage {i}, which has a cls token: '
                                 'windowed attention is for stages without one (0 keeps it '
                                 'global)')
        self.stages = ModuleList()
        stage_in_channels = in_channels
        for i in range(self.num_stages):
            attn_cfg = dict(method=attn_method, kernel_size=kernel_size, stride_q=stride_q,
                            stride_kv=stride_kv[i], padding_q=padding_q,
                            padding_kv=padding_kv[i], qkv_bias=qkv_bias,
                            window_size=window_size[i], pool_kv=pool_kv[i])
            block_cfg = dict(mlp_ratio=mlp_ratio, drop_rate=drop_rate,
                             attn_drop_rate=attn_drop_rate, act_cfg=act_cfg, attn_cfg=attn_cfg,
                             with_cp=with_cp, cpu_kernels=self.cpu_kernels)
            self.stages.append(CvTStage(
                stage_in_channels, embed_dims[i], depths[i], num_heads[i],
                self.patch_sizes[i], self.patch_strides[i], self.patch_paddings[i],
                with_cls_token[i], drop_path_rates[i], norm_cfg, block_cfg))
            stage_in_channels = embed_dims[i]

        if out_type == 'cls_token':
            self.cls_norm = build_norm_layer(norm_cfg, embed_dims[-1])[1]
        elif out_norm:
            for i in self.out_indices:
                self.add_module(f'out_norm{i}', build_norm_layer(norm_cfg, embed_dims[i])[1])
        self._freeze_stages()

    def _per_stage(self, value: PerStage, name: str) -> list:
        """An int for every stage, or one value per stage."""
        if isinstance(value, int):
            return [value] * self.num_stages
        if len(value) != self.num_stages:
            raise ValueError(f'{name} has {len(value)} entries for {self.num_stages} stages')
        return list(value)

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """The settings dict of ``arch`` (a name in :attr:`arch_zoo` or a dict), validated."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'unknown CvT arch {arch!r}; choose from '
                                 f'{sorted(cls.arch_zoo)} or pass a dict')
            return copy.deepcopy(cls.arch_zoo[key])
        required = {'embed_dims', 'depths', 'num_heads'}
        if not isinstance(arch, dict) or not required <= set(arch):
            raise ValueError(f'a custom CvT arch must be a dict with keys {sorted(required)}, '
                             f'got {arch!r}')
        lengths = {len(arch[key]) for key in required}
        if len(lengths) != 1:
            raise ValueError(f'arch entries {sorted(required)} must have one value per stage')
        return copy.deepcopy(arch)

    def init_weights(self) -> None:
        super().init_weights()
        pretrained = (isinstance(self.init_cfg, dict)
                      and self.init_cfg.get('type') == 'Pretrained')
        if not pretrained:
            for stage in self.stages:
                if stage.cls_token is not None:
                    trunc_normal_(stage.cls_token, std=.02)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            modules = [self.stages[i], getattr(self, f'out_norm{i}', None)]
            if i == self.num_stages - 1:
                modules.append(getattr(self, 'cls_norm', None))
            for module in [module for module in modules if module is not None]:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            tokens, hw_shape, cls_token = stage(x)
            x = tokens_to_map(tokens, hw_shape)
            if i not in self.out_indices:
                continue
            out_norm = getattr(self, f'out_norm{i}', None)
            if self.out_type == 'cls_token':
                outs.append(self.cls_norm(cls_token[:, 0]))
            elif out_norm is not None:
                outs.append(tokens_to_map(out_norm(tokens), hw_shape).contiguous())
            else:
                outs.append(x.contiguous())
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold each projection's BatchNorm into its depthwise conv and QuickGELU's scalings
        into the MLP's linear layers (eval outputs unchanged)."""
        for module in self.modules():
            if isinstance(module, DepthwiseConvBN):
                module.fuse_bn()
            elif isinstance(module, Mlp):
                module.fold_quick_gelu()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A classification checkpoint carries the cls-token norm, which dense models do not use;
        # drop it quietly rather than report it as unexpected.
        if not hasattr(self, 'cls_norm'):
            unused = [key for key in state_dict if key.startswith(prefix + 'cls_norm.')]
            for key in unused:
                del state_dict[key]
            if unused:
                print_log(f'CvT: ignored {len(unused)} cls_norm tensors of a classification '
                          f'checkpoint (unused with out_type={self.out_type!r})',
                          logger='current')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """(depth, number of depths) of ``param_name`` (``prefix`` the backbone's, e.g.
        ``'backbone.'``) for layer-wise lr decay, mmpretrain's ``lr * rate ** (num_layers -
        depth - 1)``. In the order the tokens go: stage i's embedding and cls token at
        ``sum(depths[:i]) + i``, then one depth per block (BatchNorms included); ``cls_norm``,
        ``out_norm{i}`` and names outside the backbone (neck, heads) last. CvT-13: 17 depths,
        stage 2's embedding at 5, its last block at 15."""
        depths = self.arch_settings['depths']
        num_layers = sum(depths) + self.num_stages + 1
        last = num_layers - 1
        if not param_name.startswith(prefix):
            return last, num_layers
        name = param_name[len(prefix):]
        parts = name.split('.')
        if parts[0] != 'stages':
            return last, num_layers  # cls_norm, out_norm{i}
        stage = int(parts[1])
        embed_depth = sum(depths[:stage]) + stage
        if parts[2] == 'blocks':
            return embed_depth + 1 + int(parts[3]), num_layers
        return embed_depth, num_layers  # patch_embed.*, cls_token
