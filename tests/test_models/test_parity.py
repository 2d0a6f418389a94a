"""Numerical parity with Hugging Face transformers' CvT, and the published parameter counts."""
import pytest
import torch
from mmpretrain.registry import MODELS

import cvt_mm  # noqa: F401
from cvt_mm.apis import classifier_cfg
from cvt_mm.checkpoint.key_mapping import convert_state_dict
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import FAST_TEST_ARCH, build_hf_and_cvt_mm, compare_with_hf


@pytest.mark.parametrize('size', [(224, 224), (131, 97)])
def test_cvt13_matches_hf_logits_and_stage_maps(size):
    hf_model, ours = build_hf_and_cvt_mm(CvT.arch_zoo['13'], 1000)
    diffs = compare_with_hf(hf_model, ours, torch.randn(2, 3, *size))
    assert diffs['shapes_match']
    assert diffs['logits_scale'] > 0.1  # the comparison is not between near-zero tensors
    assert diffs['logits'] < 1e-4
    assert max(diffs['stages']) < 1e-4


def test_tiny_matches_hf_batch_of_one():
    hf_model, ours = build_hf_and_cvt_mm(FAST_TEST_ARCH, 7, seed=3)
    diffs = compare_with_hf(hf_model, ours, torch.randn(1, 3, 45, 77))
    assert diffs['logits'] < 1e-5 and max(diffs['stages']) < 1e-5


def test_a_wrong_mapping_would_be_caught():
    """Swapping two same-shaped tensors (k and v projections) must break parity."""
    hf_model, ours = build_hf_and_cvt_mm(FAST_TEST_ARCH, 7)
    attn = ours.backbone.stages[2].blocks[0].attn
    with torch.no_grad():
        weight_k = attn.proj_k.weight.clone()
        attn.proj_k.weight.copy_(attn.proj_v.weight)
        attn.proj_v.weight.copy_(weight_k)
    assert compare_with_hf(hf_model, ours, torch.randn(1, 3, 64, 64))['logits'] > 1e-3


def test_quick_gelu_is_the_default_and_computes_the_official_formula():
    """The default classifier's MLPs compute ``x * sigmoid(1.702 x)`` (the official
    QuickGELU), and so differ from HF's exact GELU on the same weights."""
    from cvt_mm.models.backbones.cvt import Mlp
    _, ours_gelu = build_hf_and_cvt_mm(FAST_TEST_ARCH, 5)
    ours_quick = MODELS.build(classifier_cfg(FAST_TEST_ARCH, 5))
    ours_quick.load_state_dict(ours_gelu.state_dict())
    ours_quick.eval()
    activations = [mlp.act for mlp in ours_quick.modules() if isinstance(mlp, Mlp)]
    assert len(activations) == sum(FAST_TEST_ARCH['depths'])
    h = torch.linspace(-6, 6, 101)
    for act in activations:
        torch.testing.assert_close(act(h), h * torch.sigmoid(1.702 * h), rtol=1e-6, atol=1e-6)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours_quick(x, mode='tensor') - ours_gelu(x, mode='tensor')).abs().max()
    assert 1e-5 < diff < 1.0


@pytest.mark.parametrize('arch, expected', [
    ('13', 19_997_480), ('21', 31_622_696), ('w24', 277_196_392)])
def test_parameter_counts_match_the_paper(arch, expected):
    with torch.device('meta'):  # W24 would take >1 GB of real memory
        model = MODELS.build(classifier_cfg(arch, 1000))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_training_mode_gradients_match_hf():
    """Training runs other code than inference (batch-statistics BN, no chunked MLP, autograd
    through the fused k/v path): its loss and every parameter gradient must match HF's."""
    hf_model, ours = build_hf_and_cvt_mm(FAST_TEST_ARCH, 7, seed=1)
    for model in (hf_model, ours):
        model.train()
        for module in model.modules():  # stochastic depth and dropout off on both sides
            if hasattr(module, 'drop_prob'):  # HF's drop path
                module.drop_prob = 0.
            if hasattr(module, 'drop_path_rate'):  # cvt_mm's blocks
                module.drop_path_rate = 0.
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 3, 5, 6])
    hf_loss = torch.nn.functional.cross_entropy(hf_model(images).logits, labels)
    our_loss = torch.nn.functional.cross_entropy(ours(images, mode='tensor'), labels)
    hf_loss.backward()
    our_loss.backward()
    torch.testing.assert_close(our_loss, hf_loss, rtol=1e-5, atol=1e-6)

    hf_grads = convert_state_dict(
        {name: param.grad for name, param in hf_model.named_parameters()})
    compared = 0
    for name, param in ours.named_parameters():
        # A bias added to every key shifts all of a query's logits equally: softmax cancels
        # it, so its true gradient is zero and both sides hold only rounding noise.
        if name.endswith('proj_k.bias') or name.endswith('conv_proj_k.bn.bias'):
            continue
        scale = hf_grads[name].norm()
        if scale == 0:  # e.g. the last block's patch-token queries: only the cls token is read
            assert param.grad is None or not param.grad.any(), name
            continue
        assert (param.grad - hf_grads[name]).norm() / scale < 1e-3, name
        compared += 1
    assert compared > 50
