"""Numerical parity with Hugging Face transformers' CvT, and the published parameter counts."""
import pytest
import torch
from conftest import TINY_ARCH, randomize_norms
from mmpretrain.registry import MODELS

import cvt_mm  # noqa: F401
from cvt_mm.models.classifier import cvt_classifier_cfg
from cvt_mm.models.weight_conversion import convert_state_dict

transformers = pytest.importorskip('transformers')


def hf_config(arch: dict, num_labels: int):
    return transformers.CvtConfig(
        embed_dim=arch['embed_dims'], depth=arch['depths'], num_heads=arch['num_heads'],
        num_labels=num_labels)


def build_pair(arch, num_labels, seed=0):
    """A randomly initialised HF CvT and the cvt_mm classifier loaded from its weights."""
    torch.manual_seed(seed)
    hf_model = transformers.CvtForImageClassification(hf_config(arch, num_labels))
    randomize_norms(hf_model, seed)
    with torch.no_grad():  # HF zero-inits biases; random ones catch swapped tensors
        for name, param in hf_model.named_parameters():
            if name.endswith('bias'):
                param.normal_(0, 0.05)
    hf_model.eval()
    ours = MODELS.build(cvt_classifier_cfg(arch, num_labels, act_cfg=dict(type='GELU')))
    missing, unexpected = ours.load_state_dict(convert_state_dict(hf_model.state_dict()),
                                               strict=True)
    assert not missing and not unexpected
    return hf_model, ours.eval()


@pytest.mark.parametrize('size', [(224, 224), (131, 97)])
def test_cvt13_matches_hf_logits_and_stage_maps(size):
    from cvt_mm.models.backbones.cvt import CvT
    hf_model, ours = build_pair(CvT.arch_zoo['13'], 1000)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        hf_out = hf_model(x, output_hidden_states=True)
        logits = ours(x, mode='tensor')
        ours.backbone.out_type = 'featmap'  # same weights, raw stage maps
        ours.backbone.out_indices = [0, 1, 2]
        ours.backbone.out_norm = False
        maps = ours.backbone(x)
    torch.testing.assert_close(logits, hf_out.logits, rtol=0, atol=1e-4)
    assert logits.abs().max() > 0.1  # the comparison is not between near-zero tensors
    for ours_map, hf_map in zip(maps, hf_out.hidden_states):
        assert ours_map.shape == hf_map.shape
        torch.testing.assert_close(ours_map, hf_map, rtol=0, atol=1e-4)


def test_tiny_matches_hf_batch_of_one():
    hf_model, ours = build_pair(TINY_ARCH, 7, seed=3)
    x = torch.randn(1, 3, 45, 77)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), hf_model(x).logits,
                                   rtol=0, atol=1e-5)


def test_quick_gelu_is_the_default_and_differs_from_gelu():
    hf_model, ours_gelu = build_pair(TINY_ARCH, 5)
    ours_quick = MODELS.build(cvt_classifier_cfg(TINY_ARCH, 5))
    ours_quick.load_state_dict(ours_gelu.state_dict())
    ours_quick.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours_quick(x, mode='tensor') - ours_gelu(x, mode='tensor')).abs().max()
    assert 1e-5 < diff < 1.0


@pytest.mark.parametrize('arch, expected', [
    ('13', 19_997_480), ('21', 31_622_696), ('w24', 277_196_392)])
def test_parameter_counts_match_the_paper(arch, expected):
    with torch.device('meta'):  # W24 would take >1 GB of real memory
        model = MODELS.build(cvt_classifier_cfg(arch, 1000))
    assert sum(p.numel() for p in model.parameters()) == expected
