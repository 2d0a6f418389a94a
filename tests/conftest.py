"""Shared fixtures: tiny CvT settings and helpers that make random weights matter."""
import pytest
import torch
import torch.nn as nn

# Three stages, cls token in the last, the official kernels and strides: every code path of
# CvT-13 at a fraction of its cost. Depth i+1 in stage i also sidesteps an HF indexing bug
# (drop_path_rates[stage] over a list of `depth` entries) that breaks shallower stages.
TINY_ARCH = dict(embed_dims=[16, 32, 48], depths=[1, 2, 3], num_heads=[1, 2, 3])


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random affine parameters and BN random running statistics.

    Fresh norms are identities in eval mode, which would hide a wrong BN or LN mapping.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape,
                                                            generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape,
                                                    generator=generator) + 0.5)
    return model
