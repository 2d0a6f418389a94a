"""CPU kernels of the CvT backbone: stand-ins for parts of its modules' plain forward that compute
the same function faster or in less memory on a CPU. ``CvT(cpu_kernels=True)`` (the default)
lets them run where :func:`cpu_kernels_apply` allows; anywhere else, and with
``cpu_kernels=False``, the modules run as the paper writes them.

* :class:`ChunkedMlpFunction`: the MLP with QuickGELU in training, ``mlp_chunk_rows`` tokens at a
  time, forward and backward.
* :func:`mlp_in_chunks`: the MLP in inference, ``mlp_chunk_rows`` tokens at a time.
  :func:`chunked_mlp` chooses between the two.
* :func:`attention_in_query_chunks`: the attention's queries split into chunks in training, so
  that SDPA's backward keeps every thread busy.
* :func:`project_kv_batched`: k's and v's linear projections as one batched matmul.

Each computes what the module computes (``tests/test_models/test_cpu_kernels.py``); the
``cls``, ``det`` and ``det_train`` sections of ``tools/benchmark.py`` time them against the plain
modules.
"""
import math
from dataclasses import dataclass, fields
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .token_maps import map_to_tokens, zero_pad


@dataclass(frozen=True)
class CpuKernels:
    """The CPU kernels' settings, ``CvT(cpu_kernels=dict(...))``.

    Args:
        mlp_chunk_rows (int): Tokens per chunk of the MLP, so that its hidden activations (4x
            wider than the tokens) stay in cache. Defaults to 2048.
        query_chunks (int, optional): Query chunks of a CPU attention in training; None lets
            :func:`backward_query_chunks` choose from the thread count, 1 turns them off.
            Defaults to None.
    """

    mlp_chunk_rows: int = 2048
    query_chunks: Optional[int] = None

    def __post_init__(self):
        for name in ('mlp_chunk_rows', 'query_chunks'):
            value = getattr(self, name)
            if not (value is None and name == 'query_chunks'
                    or isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f'cpu_kernels: {name} must be a positive int, got {value!r}')

    @classmethod
    def from_argument(cls, value: Union[bool, dict]) -> Optional['CpuKernels']:
        """``CvT``'s ``cpu_kernels`` argument: True (the defaults), False (None here) or a dict
        of settings."""
        if isinstance(value, bool):
            return cls() if value else None
        if not isinstance(value, dict):
            raise ValueError(f'cpu_kernels must be True, False or a dict of settings, '
                             f'got {value!r}')
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f'cpu_kernels: unknown settings {unknown}; choose from {names}')
        return cls(**value)


def cpu_kernels_apply(x: torch.Tensor, dropout: float = 0.) -> bool:
    """Whether the CPU kernels may stand in for the plain modules on input ``x``, whose module
    has the active dropout probability ``dropout``.

    Only on the CPU: a GPU would run thousands of small kernels where the plain modules run a
    few large ones. Not under ``torch.compile`` (inductor fuses the plain form), nor under an
    ONNX export, a jit trace or script (a chunk loop's trip count would be frozen at the traced
    size; fvcore's FlopAnalyzer, a trace, would see the training function as one opaque op).
    Not under autocast (its casts are made op by op). Not with active dropout (the kernels have
    none, and query chunks would draw other masks).
    """
    return (x.device.type == 'cpu' and not dropout
            and not torch.is_autocast_enabled('cpu')
            and not torch.compiler.is_compiling()
            and not torch.onnx.is_in_onnx_export()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting())


# ----------------------------------------------------------------------------------- attention
def backward_query_chunks(batch_heads: int) -> int:
    """Into how many chunks to split the queries of a CPU attention that will be
    differentiated, so that its backward keeps every thread busy.

    The backward of SDPA's CPU flash kernel runs one thread per (batch entry, head); CvT-13's
    one-head first stage would train on one core, and its three heads of stage 2 on two
    threads would leave one idle a third of the time. ``batch_heads`` times the result is a
    multiple of the thread count.
    """
    threads = torch.get_num_threads()
    return threads // math.gcd(batch_heads, threads)


def attention_in_query_chunks(attention: Callable, q: torch.Tensor, k: torch.Tensor,
                              v: torch.Tensor, num_heads: int,
                              chunks: Optional[int]) -> torch.Tensor:
    """``attention(q, k, v)`` on (B, L, C) tokens with the queries in ``chunks`` chunks (None:
    :func:`backward_query_chunks`), each a batch entry of its own that shares k and v (autograd
    sums k's and v's gradients over the chunks). Each output row is computed as without
    chunks."""
    batch, length, channels = q.shape
    chunks = chunks or backward_query_chunks(batch * num_heads)
    if chunks == 1:
        return attention(q, k, v)
    padded = -(-length // chunks) * chunks
    if padded != length:  # zero_pad copies q even when it adds nothing
        q = zero_pad(q, 1, padded)
    q = q.reshape(batch * chunks, padded // chunks, channels)
    k, v = (t.unsqueeze(1).expand(-1, chunks, -1, -1).flatten(0, 1) for t in (k, v))
    return attention(q, k, v).reshape(batch, padded, channels)[:, :length]


def project_kv_batched(k_map: torch.Tensor, v_map: torch.Tensor,
                       cls_token: Optional[torch.Tensor], proj_k: nn.Linear,
                       proj_v: nn.Linear) -> Tuple[torch.Tensor, torch.Tensor]:
    """``proj_k`` and ``proj_v`` on k's and v's maps as tokens, the cls token (if any) in front
    of each, as one batched matmul over the two stacked. The stacked weight is a copy that
    autograd keeps for backward (``proj_k.weight`` and ``proj_v.weight`` together)."""
    kv = torch.stack((map_to_tokens(k_map), map_to_tokens(v_map)))  # (2, B, h*w, C)
    if cls_token is not None:
        kv = torch.cat((cls_token.expand(2, -1, -1, -1), kv), dim=2)
    weight = torch.stack((proj_k.weight, proj_v.weight)).transpose(1, 2)
    if proj_k.bias is None:
        projected = torch.bmm(kv.flatten(1, 2), weight)
    else:
        bias = torch.stack((proj_k.bias, proj_v.bias)).unsqueeze(1)
        projected = torch.baddbmm(bias, kv.flatten(1, 2), weight)
    k, v = projected.view_as(kv).unbind(0)
    return k, v


# ----------------------------------------------------------------------------------------- MLP
def fold_quick_gelu(fc1: nn.Linear, fc2: nn.Linear, scale: float):
    """fc1's weight and bias times QuickGELU's ``scale`` and fc2's weight divided by it:
    ``fc2(silu(scale * fc1(x)) / scale)`` is then ``fc2'(silu(fc1'(x)))``, the scalings
    applied to the parameters instead of the hidden activations (the widest tensors of the
    network)."""
    bias = None if fc1.bias is None else fc1.bias * scale
    return fc1.weight * scale, bias, fc2.weight / scale


def chunked_mlp(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear,
                quick_gelu_scale: Optional[float], chunk_rows: int) -> Optional[torch.Tensor]:
    """``Mlp``'s forward through the kernel that fits: :func:`mlp_in_chunks` without gradients,
    :class:`ChunkedMlpFunction` in training with QuickGELU (``quick_gelu_scale``); None where
    neither does (training with another activation: the plain module runs)."""
    if not torch.is_grad_enabled():
        return mlp_in_chunks(x, fc1, act, fc2, quick_gelu_scale, chunk_rows)
    if quick_gelu_scale is None:
        return None
    return ChunkedMlpFunction.apply(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias,
                                    quick_gelu_scale, chunk_rows)


def mlp_in_chunks(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear,
                  quick_gelu_scale: Optional[float], chunk_rows: int) -> torch.Tensor:
    """``fc2(act(fc1(x)))`` in inference, ``chunk_rows`` tokens at a time so that the hidden
    activations stay in cache; with QuickGELU (``quick_gelu_scale``) its scalings folded into
    the weights (:func:`fold_quick_gelu`, once for all the chunks)."""
    if quick_gelu_scale is None:
        def mlp(part):
            return fc2(act(fc1(part)))
    else:
        fc1_weight, fc1_bias, fc2_weight = fold_quick_gelu(fc1, fc2, quick_gelu_scale)

        def mlp(part):
            return F.linear(F.silu(F.linear(part, fc1_weight, fc1_bias)), fc2_weight, fc2.bias)
    rows = x.reshape(-1, x.shape[-1]).split(chunk_rows)
    return torch.cat([mlp(part) for part in rows]).view(*x.shape[:-1], -1)


def accumulate_product(total: Optional[torch.Tensor], a: torch.Tensor,
                       b: torch.Tensor) -> torch.Tensor:
    """``total + a @ b``, in place; ``a @ b`` where ``total`` is None."""
    return torch.mm(a, b) if total is None else total.addmm_(a, b)


class ChunkedMlpFunction(torch.autograd.Function):
    """``fc2(quick_gelu(fc1(x)))`` over ``chunk_rows`` tokens at a time, forward and backward:
    the training step of the MLP with QuickGELU, its scalings folded into the weights
    (:func:`fold_quick_gelu`).

    Autograd would keep both fc1's and the activation's outputs, the widest tensors of the
    network, and allocate two more of their size in backward (the activation's input and
    output gradients); each is a fresh allocation of up to 62 MB per block at detection
    size. Here fc1's output alone is kept, a chunk at a time, and backward recomputes the
    activation per chunk, so every other hidden-sized tensor is one chunk that stays in cache.
    The weight gradients are sums over the chunks. The folded weights are recomputed in backward
    rather than kept: nothing of a weight's size is saved but the parameters themselves.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, fc1_weight: torch.Tensor,
                fc1_bias: Optional[torch.Tensor], fc2_weight: torch.Tensor,
                fc2_bias: Optional[torch.Tensor], scale: float, chunk_rows: int):
        folded_fc1_weight = fc1_weight * scale
        folded_fc1_bias = None if fc1_bias is None else fc1_bias * scale
        folded_fc2_weight = fc2_weight / scale
        rows = x.reshape(-1, x.shape[-1])
        hidden_chunks, out_chunks = [], []
        for part in rows.split(chunk_rows):
            hidden_chunks.append(F.linear(part, folded_fc1_weight, folded_fc1_bias))
            out_chunks.append(F.linear(F.silu(hidden_chunks[-1]), folded_fc2_weight, fc2_bias))
        ctx.input_shape = x.shape
        ctx.scale = scale
        ctx.save_for_backward(rows, fc1_weight, fc2_weight, *hidden_chunks)
        return torch.cat(out_chunks).view(*x.shape[:-1], -1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        rows, fc1_weight, fc2_weight, *hidden_chunks = ctx.saved_tensors
        scale = ctx.scale
        # Only the gradients asked for: a frozen layer's weights cost no products.
        needs_rows, needs_fc1_weight, needs_fc1_bias, needs_fc2_weight, needs_fc2_bias = \
            ctx.needs_input_grad[:5]
        fc2_weight = fc2_weight / scale
        grad_out = grad_out.reshape(-1, grad_out.shape[-1])
        grad_rows = torch.empty_like(rows) if needs_rows else None
        fc1_weight = fc1_weight * scale if needs_rows else None
        grad_fc1_weight = grad_fc1_bias = grad_fc2_weight = None
        start = 0
        for hidden in hidden_chunks:
            stop = start + hidden.shape[0]
            grad_part = grad_out[start:stop]
            if needs_fc2_weight:
                grad_fc2_weight = accumulate_product(grad_fc2_weight, grad_part.t(),
                                                     F.silu(hidden))
            grad_hidden = torch.ops.aten.silu_backward(grad_part @ fc2_weight, hidden)
            if needs_fc1_weight:
                grad_fc1_weight = accumulate_product(grad_fc1_weight, grad_hidden.t(),
                                                     rows[start:stop])
            if needs_fc1_bias:
                bias_part = grad_hidden.sum(0)
                grad_fc1_bias = (bias_part if grad_fc1_bias is None
                                 else grad_fc1_bias.add_(bias_part))
            if grad_rows is not None:
                torch.mm(grad_hidden, fc1_weight, out=grad_rows[start:stop])
            start = stop
        # The chain rule through the folding: the folded weights' gradients scaled as autograd
        # scales them through ``weight * scale`` and ``weight / scale``.
        return (None if grad_rows is None else grad_rows.view(ctx.input_shape),
                None if grad_fc1_weight is None else grad_fc1_weight.mul_(scale),
                None if grad_fc1_bias is None else grad_fc1_bias.mul_(scale),
                None if grad_fc2_weight is None else grad_fc2_weight.div_(scale),
                grad_out.sum(0) if needs_fc2_bias else None, None, None)
