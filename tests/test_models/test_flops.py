"""MAC counts with attention included, against the paper's GMACs."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import cvt_mm  # noqa: F401
from cvt_mm.apis import classifier_cfg
from cvt_mm.macs import count_macs, training_macs
from cvt_mm.models.backbones.cpu_kernels import CpuKernels
from cvt_mm.models.backbones.cvt import Mlp


def test_sdpa_matmuls_are_counted():

    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 50, 8), torch.randn(2, 3, 13, 8), torch.randn(2, 3, 13, 4)
    assert count_macs(Attention(), (q, k, v)).total() == 2 * 3 * 50 * 13 * (8 + 4)


def test_training_macs_count_forward_and_backward_of_cpu_attention():

    class ProjectedAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8, bias=False)

        def forward(self, x):
            q = self.proj(x).view(2, 50, 2, 4).transpose(1, 2)
            return F.scaled_dot_product_attention(q, q[:, :, :13], q[:, :, :13])

    x = torch.randn(2, 50, 8)
    projection = 2 * 50 * 8 * 8  # the input needs no gradient: one product backward
    product = 2 * 2 * 50 * 13 * 4  # one of the attention's (batch, heads, queries, keys, d)
    # Forward: the projection and two attention products; backward: the weight gradient and
    # the flash kernel's five (the attention weights recomputed among them).
    assert training_macs(ProjectedAttention(), x) == 2 * projection + 7 * product


@pytest.mark.parametrize('groups', [1, 4, 16])
def test_training_macs_count_a_grouped_convolutions_weight_gradient_per_group(groups):
    # CvT's q/k/v projections are depthwise (groups = channels); torch's formula counts the
    # weight gradient as if they were dense.
    conv = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups),
                               torch.nn.Conv2d(16, 16, 3, stride=2, groups=groups))
    x = torch.randn(2, 16, 9, 9)
    first = 2 * 9 * 9 * 16 * (16 // groups) * 3 * 3  # (batch, map, out, in per group, kernel)
    second = 2 * 4 * 4 * 16 * (16 // groups) * 3 * 3
    # The input needs no gradient: the first conv's weight gradient alone backward, the
    # second's input and weight gradients; each as many products as the forward.
    assert training_macs(conv, x) == 2 * first + 3 * second


def test_training_macs_count_the_chunked_mlps_accumulated_weight_gradients():
    # 3 chunks: two weight gradients summed in
    mlp = Mlp(16, 64, dict(type='QuickGELU'), cpu_kernels=CpuKernels(mlp_chunk_rows=30)).train()
    # Forward fc1 and fc2; backward both weight gradients and fc2's input gradient (the input
    # needs none).
    assert training_macs(mlp, torch.randn(2, 37, 16)) == 5 * 2 * 37 * 16 * 64


def test_the_chunked_mlp_computes_no_gradient_of_a_frozen_layer():
    mlp = Mlp(16, 64, dict(type='QuickGELU'), cpu_kernels=CpuKernels(mlp_chunk_rows=30)).train()
    mlp.requires_grad_(False)  # frozen, as a fine-tuning user freezes the MLPs
    x = torch.randn(2, 37, 16, requires_grad=True)
    assert type(mlp(x).grad_fn).__name__ == 'ChunkedMlpFunctionBackward'
    # Forward fc1 and fc2; backward the input's gradient alone: through fc2, then fc1.
    assert training_macs(mlp, x) == 4 * 2 * 37 * 16 * 64
    assert all(param.grad is None for param in mlp.parameters())


def test_count_macs_is_the_same_with_autograd_on():
    # A trace with gradients on takes the plain MLP, not the training chunks (an opaque op).
    model = MODELS.build(classifier_cfg('13', 10)).train()
    image = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        expected = count_macs(model, (image,)).total()
    assert count_macs(model, (image,)).total() == expected


@pytest.mark.parametrize('arch, size, paper_gmacs', [
    ('13', 224, 4.5), ('21', 224, 7.1), ('13', 384, 16.3), ('w24', 384, 193.2)])
def test_gmacs_match_the_paper(arch, size, paper_gmacs):
    # Counting traces a real forward (meta tensors do not trace); W24 at 384 takes a few seconds.
    model = MODELS.build(classifier_cfg(arch, 1000)).eval()
    image = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        gmacs = count_macs(model, (image,)).total() / 1e9
    assert gmacs == pytest.approx(paper_gmacs, rel=0.02)
