"""CvT: Introducing Convolutions to Vision Transformers (Wu et al., ICCV 2021).

One backbone serves classification (mmpretrain) and dense prediction (mmdet, mmseg):

* ``out_type='cls_token'``: the last stage's cls token after the final LayerNorm, as the
  official classifier feeds its head.
* ``out_type='featmap'``: NCHW maps at strides 4/8/16, each through its own LayerNorm (as in
  mmdet's Swin). The cls token of the last stage still attends and is attended to; it is only
  dropped from the map.

The arithmetic follows microsoft/CvT ``lib/models/cls_cvt.py`` (attention scale over the whole
embedding width, QuickGELU, cls token bypassing the conv projections); attention runs through
``scaled_dot_product_attention`` so no attention matrix is materialised.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from cvt_mm.registry import register_activation, register_backbone

HWShape = Tuple[int, int]


def tokens_to_map(tokens: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) view.

    The view is channels-last in memory, which convolutions consume without a copy.
    """
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *hw_shape)


def map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return feature_map.flatten(2).transpose(1, 2)


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
    """The ``dw_bn`` projection: depthwise conv without bias, then BatchNorm.

    ``fuse_bn`` folds the BatchNorm into the conv for deployment (same outputs in eval mode).
    """

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride, padding,
                              groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    @torch.no_grad()
    def fuse_bn(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        bn_scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        fused = nn.Conv2d(self.conv.in_channels, self.conv.out_channels,
                          self.conv.kernel_size, self.conv.stride, self.conv.padding,
                          groups=self.conv.groups, bias=True).to(self.conv.weight)
        fused.weight.copy_(self.conv.weight * bn_scale.view(-1, 1, 1, 1))
        fused.bias.copy_(self.bn.bias - self.bn.running_mean * bn_scale)
        self.conv = fused
        self.bn = nn.Identity()


def build_conv_projection(method: str, channels: int, kernel_size: int, stride: int,
                          padding: int) -> Optional[nn.Module]:
    """The spatial projection applied to the token map before q/k/v's linear layers."""
    if method == 'dw_bn':
        return DepthwiseConvBN(channels, kernel_size, stride, padding)
    if method == 'avg':
        return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=True)
    if method == 'linear':
        return None
    raise ValueError(f"attn_method must be 'dw_bn', 'avg' or 'linear', got {method!r}")


class ConvAttention(BaseModule):
    """Multi-head attention whose q, k, v come from convolutional projections.

    Args:
        embed_dims: token width (input and output).
        num_heads: attention heads.
        with_cls_token: the first token is a cls token; it skips the spatial
            projections and is prepended to q, k and v.
        method: 'dw_bn' (official default), 'avg' (q unprojected, k/v average pooled) or
            'linear' (no spatial projection).
    """

    def __init__(self, embed_dims: int, num_heads: int, with_cls_token: bool,
                 method: str = 'dw_bn', kernel_size: int = 3, stride_q: int = 1,
                 stride_kv: int = 2, padding_q: int = 1, padding_kv: int = 1,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 init_cfg=None):
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.with_cls_token = with_cls_token
        # The official code scales by the full width, not the head width.
        self.scale = embed_dims ** -0.5
        self.attn_drop = attn_drop
        # The official 'avg' method leaves q unprojected.
        self.conv_proj_q = build_conv_projection('linear' if method == 'avg' else method,
                                                 embed_dims, kernel_size, stride_q, padding_q)
        self.conv_proj_k = build_conv_projection(method, embed_dims, kernel_size, stride_kv,
                                                 padding_kv)
        self.conv_proj_v = build_conv_projection(method, embed_dims, kernel_size, stride_kv,
                                                 padding_kv)
        self.proj_q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_k = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, channels = tokens.shape
        return tokens.view(batch, length, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
        if self.with_cls_token:
            cls_token, x = x[:, :1], x[:, 1:]
        feature_map = tokens_to_map(x, hw_shape)

        def project(conv_proj: Optional[nn.Module]) -> torch.Tensor:
            if conv_proj is None:
                projected = x
            else:
                projected = map_to_tokens(conv_proj(feature_map))
            if self.with_cls_token:
                projected = torch.cat((cls_token, projected), dim=1)
            return projected

        q = self._split_heads(self.proj_q(project(self.conv_proj_q)))
        k = self._split_heads(self.proj_k(project(self.conv_proj_k)))
        v = self._split_heads(self.proj_v(project(self.conv_proj_v)))
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0., scale=self.scale)
        out = out.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out))


@register_activation
class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the official CvT activation (CLIP's approximation of GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Sequential):
    def __init__(self, embed_dims: int, hidden_dims: int, act_cfg: dict, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = build_activation_layer(act_cfg)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.drop2 = nn.Dropout(drop)


class CvTBlock(BaseModule):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, embed_dims: int, num_heads: int, with_cls_token: bool,
                 mlp_ratio: float = 4., drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0., act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5), attn_cfg: Optional[dict] = None,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ConvAttention(embed_dims, num_heads, with_cls_token,
                                  attn_drop=attn_drop_rate, proj_drop=drop_rate,
                                  **(attn_cfg or {}))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg, drop_rate)

    def forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:

        def inner_forward(x):
            x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
            return x + self.drop_path(self.mlp(self.norm2(x)))

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(inner_forward, x, use_reentrant=False)
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


def stage_drop_path_rates(drop_path_rate, depths: Sequence[int]) -> List[List[float]]:
    """Per-block stochastic depth.

    A sequence gives each stage its own maximum, rising linearly within the stage (the official
    recipe); a float rises linearly over all blocks of the network (the Swin / mmdet convention).
    """
    if isinstance(drop_path_rate, (int, float)):
        # device='cpu': plain numbers, even when the model is built under a meta-device context.
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        bounds = [sum(depths[:i]) for i in range(len(depths) + 1)]
        return [rates[bounds[i]:bounds[i + 1]] for i in range(len(depths))]
    if len(drop_path_rate) != len(depths):
        raise ValueError(f'drop_path_rate has {len(drop_path_rate)} entries for '
                         f'{len(depths)} stages')
    return [torch.linspace(0, rate, depth, device='cpu').tolist()
            for rate, depth in zip(drop_path_rate, depths)]


@register_backbone
class CvT(BaseModule):
    """CvT backbone.

    Args:
        arch: '13', '21', 'w24' or a dict with ``embed_dims``, ``depths`` and ``num_heads``
            (one entry per stage) and optionally ``drop_path_rates``.
        in_channels: image channels.
        out_type: 'cls_token' (classification) or 'featmap' (dense prediction).
        out_indices: stages to output (0-based; negative counts from the end). With
            'cls_token' only the last stage, which carries the cls token, can be output.
        drop_path_rate: None for the arch's official per-stage rates; a float for a rate
            rising linearly over all blocks; a per-stage sequence for the official scheme.
        out_norm: in 'featmap' mode, apply a LayerNorm to each output map (as mmdet's Swin).
        frozen_stages: freeze the first ``frozen_stages`` stages (parameters and BN statistics).
        norm_eval: keep the projections' BatchNorms in eval mode during training.
        with_cp: gradient checkpointing per block, trading compute for memory.
        attn_method: 'dw_bn', 'avg' or 'linear' (the official projection methods).
        act_cfg: MLP activation; QuickGELU is official, ``dict(type='GELU')`` matches HF.
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

    def __init__(self,
                 arch: Union[str, dict] = '13',
                 in_channels: int = 3,
                 out_type: str = 'cls_token',
                 out_indices: Union[int, Sequence[int]] = -1,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 with_cls_token: Optional[Sequence[bool]] = None,
                 attn_method: str = 'dw_bn',
                 kernel_size: int = 3,
                 stride_q: int = 1,
                 stride_kv: int = 2,
                 padding_q: int = 1,
                 padding_kv: int = 1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Union[None, float, Sequence[float]] = None,
                 act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 out_norm: bool = True,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        if init_cfg is None:
            # The official init: trunc-normal Linear, unit norms; convs keep PyTorch defaults.
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer=['LayerNorm', 'BatchNorm2d'], val=1., bias=0.),
            ]
        super().__init__(init_cfg)
        self.arch_settings = self._parse_arch(arch)
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        num_heads = self.arch_settings['num_heads']
        self.num_stages = len(depths)
        self.embed_dims = embed_dims

        if with_cls_token is None:
            # Only the last stage carries a cls token.
            with_cls_token = [False] * (self.num_stages - 1) + [True]
        if len(with_cls_token) != self.num_stages:
            raise ValueError(f'with_cls_token has {len(with_cls_token)} entries for '
                             f'{self.num_stages} stages')

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

        attn_cfg = dict(method=attn_method, kernel_size=kernel_size, stride_q=stride_q,
                        stride_kv=stride_kv, padding_q=padding_q, padding_kv=padding_kv,
                        qkv_bias=qkv_bias)
        block_cfg = dict(mlp_ratio=mlp_ratio, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                         act_cfg=act_cfg, attn_cfg=attn_cfg, with_cp=with_cp)
        self.stages = ModuleList()
        stage_in_channels = in_channels
        for i in range(self.num_stages):
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
        self.out_norm = out_norm and out_type == 'featmap'
        self._freeze_stages()

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise ValueError(f'unknown CvT arch {arch!r}; choose from '
                                 f'{sorted(self.arch_zoo)} or pass a dict')
            return copy.deepcopy(self.arch_zoo[key])
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
            modules = [self.stages[i]]
            if hasattr(self, f'out_norm{i}'):
                modules.append(getattr(self, f'out_norm{i}'))
            if i == self.num_stages - 1 and hasattr(self, 'cls_norm'):
                modules.append(self.cls_norm)
            for module in modules:
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
            if self.out_type == 'cls_token':
                outs.append(self.cls_norm(cls_token[:, 0]))
            else:
                if self.out_norm:
                    x_out = tokens_to_map(getattr(self, f'out_norm{i}')(tokens), hw_shape)
                else:
                    x_out = x
                outs.append(x_out.contiguous())
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold each projection's BatchNorm into its depthwise conv (eval outputs unchanged)."""
        for module in self.modules():
            if isinstance(module, DepthwiseConvBN):
                module.fuse_bn()

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
