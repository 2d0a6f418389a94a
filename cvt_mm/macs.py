"""Multiply-accumulate counts that include attention.

mmengine's FlopAnalyzer (fvcore's counting rules: one fused multiply-add is one "flop") has no
handle for ``aten::scaled_dot_product_attention`` nor ``aten::baddbmm``, so a model using SDPA
would be reported without its two attention matmuls (and cvt_mm's fused k/v projection without
its matmul). This module adds those handles, and counts a training step (forward and backward)
with torch's FlopCounterMode, which knows the backward operators.
"""
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    mm_flop,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)


def sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """q @ k^T and attn @ v: B * heads * Lq * Lk * (d_qk + d_v)."""
    q_shape, k_shape, v_shape = (get_shape(value) for value in inputs[:3])
    *batch_dims, query_len, qk_dim = q_shape
    key_len = k_shape[-2]
    value_dim = v_shape[-1]
    batch = 1
    for dim in batch_dims:
        batch *= dim
    return batch * query_len * key_len * (qk_dim + value_dim)


def baddbmm_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """bias + batch1 @ batch2 (cvt_mm projects k and v in one baddbmm): B * n * k * m."""
    batch, rows, inner = get_shape(inputs[1])
    columns = get_shape(inputs[2])[-1]
    return batch * rows * inner * columns


def count_macs(model: nn.Module, inputs: Tuple[torch.Tensor, ...],
               ignore_norms: bool = True) -> FlopAnalyzer:
    """A FlopAnalyzer over ``model(*inputs)`` that counts attention.

    ``ignore_norms`` drops BatchNorm/LayerNorm from the count, as the paper's numbers (and
    inference-time BN fusion) do.
    """
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_macs)
    analyzer.set_op_handle('aten::baddbmm', baddbmm_macs)
    if ignore_norms:
        analyzer.set_op_handle('aten::batch_norm', None)
        analyzer.set_op_handle('aten::layer_norm', None)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """SDPA's CPU flash kernel: q @ k^T and attn @ v (torch counts its other kernels so)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_flash_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape,
                                       *args, **kwargs) -> int:
    """The kernel's backward: five products, the attention weights recomputed among them."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def convolution_backward_flops(grad_out_shape, x_shape, w_shape, bias_sizes, stride, padding,
                               dilation, transposed, output_padding, groups, output_mask,
                               out_shape, **kwargs) -> int:
    """A convolution's input and weight gradients, each the forward's products.

    torch's own formula counts the weight gradient of a grouped convolution as if every input
    channel met every output channel: ``groups`` times too many, 384 times for a depthwise
    conv of CvT-13's last stage (pytorch/pytorch#183405 proposed the division by groups; the
    torch pinned here, 2.14.1, still counts it dense).
    """
    def swap_first_two(shape):
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        # The weight gradient as a convolution of the input by the output gradient (for a
        # transposed convolution, the other way round), one group at a time.
        image, kernel = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(swap_first_two(image), swap_first_two(kernel),
                                 swap_first_two(out_shape[1])) // groups
    return flops


def accumulating_addmm_flops(self_shape, a_shape, b_shape, *args, **kwargs) -> int:
    """``self.addmm_(a, b)``: the product of ``a`` and ``b`` (the MLP's weight gradients are
    summed so over its chunks)."""
    return mm_flop(a_shape, b_shape)


# FlopCounterMode has formulas for the CUDA attention kernels only, none for the in-place
# addmm_, and a grouped convolution's backward wrong.
TRAINING_FLOPS: Dict[Any, Callable[..., int]] = {
    torch.ops.aten.addmm_: accumulating_addmm_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        cpu_flash_attention_backward_flops,
    torch.ops.aten.convolution_backward: convolution_backward_flops,
}


def training_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward and backward of ``model(inputs)`` (its outputs'
    gradients all ones): matrix products, convolutions and attention, forward and backward,
    as the operators run them (the CPU flash kernel's backward recomputes the attention
    weights; a grouped convolution's weight gradient is counted per group). Gradients are
    left in the parameters' ``.grad``; BN running statistics are updated once."""
    with FlopCounterMode(display=False, custom_mapping=TRAINING_FLOPS) as counter:
        outputs = model(inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs, )
        outputs = [out for out in outputs if out.requires_grad]
        torch.autograd.backward(outputs, [torch.ones_like(out) for out in outputs])
    return counter.get_total_flops() // 2
