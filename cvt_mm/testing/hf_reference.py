"""Side-by-side construction of a Hugging Face CvT and the cvt_mm model with the same weights.

Used by the parity tests, ``tools/check_parity.py`` (whose numbers are in docs/parity.md) and
the benchmark. Needs ``transformers`` (the ``tests`` / ``docs`` extras), imported only when
called.
"""
from typing import Tuple

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ..apis import classifier_cfg
from ..checkpoint.key_mapping import convert_state_dict
from ..models.backbones.token_maps import tokens_to_map


def randomize_biases(model: nn.Module, std: float = 0.1) -> nn.Module:
    """Give every bias random values from the global generator: the official init zeroes the
    Linear biases, and a zero bias would hide a wrong bias mapping or gradient."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('bias'):
                param.normal_(0, std)
    return model


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random affine parameters and BN random running statistics.

    Fresh norms are identities in eval mode, which would hide a wrong BN or LN mapping.
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(tensor, scale):
        return scale * torch.randn(tensor.shape, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.weight.copy_(1 + noise(module.weight, 0.2))
                module.bias.copy_(noise(module.bias, 0.2))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(noise(module.running_mean, 0.3))
                module.running_var.copy_(
                    torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model


def random_hf_classifier(arch: dict, num_labels: int, seed: int = 0) -> nn.Module:
    """A randomly initialised HF ``CvtForImageClassification`` in eval mode, with random norms,
    BN statistics and biases so that every tensor matters."""
    import transformers

    torch.manual_seed(seed)
    hf_config = transformers.CvtConfig(embed_dim=arch['embed_dims'], depth=arch['depths'],
                                       num_heads=arch['num_heads'], num_labels=num_labels)
    hf_model = transformers.CvtForImageClassification(hf_config)
    randomize_norms(hf_model, seed)
    with torch.no_grad():  # HF zero-inits biases; random ones catch swapped tensors
        for name, param in hf_model.named_parameters():
            if name.endswith('bias'):
                param.normal_(0, 0.05)
    return hf_model.eval()


def build_hf_and_cvt_mm(arch: dict, num_labels: int, seed: int = 0) -> Tuple[nn.Module, nn.Module]:
    """A random HF classifier and the cvt_mm classifier loaded strictly from its converted
    weights, with HF's exact GELU. Both in eval mode."""
    hf_model = random_hf_classifier(arch, num_labels, seed)
    ours = MODELS.build(classifier_cfg(arch, num_labels, act_cfg=dict(type='GELU')))
    ours.load_state_dict(convert_state_dict(hf_model.state_dict()), strict=True)
    return hf_model, ours.eval()


@torch.no_grad()
def compare_with_hf(hf_model: nn.Module, ours: nn.Module, images: torch.Tensor) -> dict:
    """Max abs differences of logits and of each stage's (un-normalised) map."""
    hf_out = hf_model(images, output_hidden_states=True)
    maps = []
    hooks = [stage.register_forward_hook(
        lambda stage, args, out: maps.append(tokens_to_map(out[0], out[1])))
        for stage in ours.backbone.stages]
    try:
        logits = ours(images, mode='tensor')
    finally:
        for hook in hooks:
            hook.remove()
    return dict(
        logits=(logits - hf_out.logits).abs().max().item(),
        logits_scale=hf_out.logits.abs().max().item(),
        stages=[(ours_map - hf_map).abs().max().item()
                for ours_map, hf_map in zip(maps, hf_out.hidden_states)],
        shapes_match=all(a.shape == b.shape for a, b in zip(maps, hf_out.hidden_states)))
