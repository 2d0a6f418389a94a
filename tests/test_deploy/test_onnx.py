"""ONNX export with dynamic batch and image size: the graph runs in onnxruntime and matches
PyTorch at sizes and batches other than the traced one, through plain ``torch.onnx.export``
(the TorchScript exporter, as mmdeploy uses it), the dynamo exporter and
tools/deployment/pytorch2onnx.py."""
import os
import re
import subprocess
import sys

import onnx
import pytest
import torch
import torch.nn as nn
from helpers import TOOLS_DIR, load_repo_config, toy_config
from mmpretrain.registry import MODELS as CLS_MODELS

from cvt_mm.apis import classifier_cfg
from cvt_mm.deploy import (
    DYNAMIC_AXES,
    DynamicAdaptiveAvgPool2d,
    build_task_model,
    export_onnx,
    exportable_module,
    onnx_max_diffs,
)
from cvt_mm.models.backbones.cpu_kernels import CpuKernels
from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms

TRACED_SHAPE = (64, 64)
# (batch, height, width): odd sizes and three batches. 200x190 gives stage 0 2,400 tokens,
# more than one chunk of the inference MLP (CpuKernels.mlp_chunk_rows), where the traced 64x64
# input has 256.
SIZES = [(1, 64, 64), (2, 97, 75), (3, 57, 83), (1, 200, 190)]
TOLERANCE = 1e-4
DENSE_CONFIGS = {'mmdet': 'cvt13_maskrcnn_coco.py', 'mmseg': 'cvt13_upernet_ade20k.py'}


def tiny_backbone(**kwargs) -> CvT:
    kwargs.setdefault('out_type', 'featmap')
    kwargs.setdefault('out_indices', (0, 1, 2) if kwargs['out_type'] == 'featmap' else -1)
    model = CvT(arch=FAST_TEST_ARCH, **kwargs)
    model.init_weights()
    randomize_biases(model)
    return randomize_norms(model).eval()  # eval: BNs folded, running stats that matter


def plain_export(model: nn.Module, path) -> None:
    torch.onnx.export(model, torch.randn(1, 3, *TRACED_SHAPE), str(path), dynamo=False,
                      input_names=['input'], dynamic_axes={'input': DYNAMIC_AXES},
                      opset_version=17)


def assert_close_at_all_sizes(model: nn.Module, path) -> None:
    rows = onnx_max_diffs(model, path, SIZES)
    assert [(row['batch'], row['height'], row['width']) for row in rows] == SIZES
    for row in rows:
        assert row['max_abs_diff'] < TOLERANCE, row
        assert row['max_abs_output'] > 0.1, row  # a real comparison, not of zeros


@pytest.mark.parametrize('out_type', ['featmap', 'cls_token'])
def test_plain_torchscript_export_runs_at_any_batch_and_size(out_type, tmp_path):
    model = tiny_backbone(out_type=out_type)
    plain_export(model, tmp_path / 'cvt.onnx')
    assert_close_at_all_sizes(model, tmp_path / 'cvt.onnx')


def test_windowed_attention_exports_at_any_batch_and_size(tmp_path):
    # Windows in the first two stages. Traced at 64x64 (stage maps 16x16 and 8x8, whole
    # windows, no padding); the sizes include 200x190 (padded windows, masked keys) and a
    # batch of 3.
    model = tiny_backbone(window_size=(8, 4, 0))
    plain_export(model, tmp_path / 'cvt.onnx')
    assert_close_at_all_sizes(model, tmp_path / 'cvt.onnx')


def test_pooled_keys_export_at_any_batch_and_size(tmp_path):
    # The odd sizes leave partial pooling blocks at the edges, whose means must count the
    # real positions only, in onnxruntime's AveragePool as in PyTorch's.
    model = tiny_backbone(pool_kv=(2, 2, 1), window_size=(8, 0, 0))
    plain_export(model, tmp_path / 'cvt.onnx')
    assert_close_at_all_sizes(model, tmp_path / 'cvt.onnx')


def test_plain_export_of_the_classifier(tmp_path):
    classifier = CLS_MODELS.build(classifier_cfg(FAST_TEST_ARCH, num_classes=5))
    classifier.init_weights()
    randomize_norms(classifier.backbone)
    classifier.eval()
    plain_export(classifier, tmp_path / 'classifier.onnx')
    assert_close_at_all_sizes(classifier, tmp_path / 'classifier.onnx')


def test_the_exported_graph_has_the_folded_and_fused_eval_path(tmp_path):
    model = tiny_backbone()
    plain_export(model, tmp_path / 'cvt.onnx')
    ops = [node.op_type for node in onnx.load(str(tmp_path / 'cvt.onnx')).graph.node]
    assert 'ScatterND' not in ops and 'Loop' not in ops
    blocks = sum(FAST_TEST_ARCH['depths'])
    # Per block: q, k, v, the attention's two, the output projection, fc1 and fc2.
    assert ops.count('MatMul') == 8 * blocks
    assert ops.count('Sigmoid') == blocks
    # What the export tool exports, the deployed model: BatchNorms folded into the depthwise
    # convs, and QuickGELU's scalings into fc1 and fc2 (one Mul and one Div fewer per block).
    deployed = exportable_module(model, 'mmpretrain')
    plain_export(deployed, tmp_path / 'deployed.onnx')
    deployed_ops = [node.op_type for node in onnx.load(str(tmp_path / 'deployed.onnx')).graph.node]
    assert 'BatchNormalization' not in deployed_ops
    assert deployed_ops.count('Mul') == ops.count('Mul') - blocks
    assert deployed_ops.count('Div') == ops.count('Div') - blocks
    assert deployed_ops.count('Sigmoid') == blocks
    assert_close_at_all_sizes(model, tmp_path / 'deployed.onnx')


def test_export_only_code_paths_equal_the_eager_fast_paths(monkeypatch):
    """What runs under ``torch.onnx.is_in_onnx_export()`` (windowed attention, masked, at every
    map size; the MLP in one chunk) computes what the eager paths compute (global attention on
    a map within one window; the MLP in chunks)."""
    model = tiny_backbone(window_size=(8, 4, 0))
    # Stage maps within one window (32x24), whole windows (64x64), padded windows (200x190,
    # 2 x 50 x 48 tokens in stage 0: several MLP chunks).
    assert 2 * 50 * 48 > CpuKernels().mlp_chunk_rows
    for size in [(32, 24), (64, 64), (200, 190)]:
        inputs = torch.randn(2, 3, *size)
        with torch.no_grad():
            eager = model(inputs)
            with monkeypatch.context() as patch:
                patch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
                exported = model(inputs)
        for expected, actual in zip(eager, exported):
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_dynamo_export_runs_at_any_batch_and_size(tmp_path):
    model = tiny_backbone()
    export_onnx(model, tmp_path / 'cvt.onnx', TRACED_SHAPE, dynamo=True)
    assert_close_at_all_sizes(model, tmp_path / 'cvt.onnx')


def test_dynamo_export_at_opset_23_fuses_each_blocks_attention(tmp_path):
    # One ONNX Attention node per block in place of MatMul -> Softmax -> MatMul, whose
    # intermediates onnxruntime keeps (docs/deployment.md: its memory at detection size).
    model = tiny_backbone()
    path = export_onnx(model, tmp_path / 'cvt.onnx', TRACED_SHAPE, dynamo=True, opset_version=23)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count('Attention') == sum(CvT.parse_arch(FAST_TEST_ARCH)['depths'])
    assert 'Softmax' not in ops
    assert_close_at_all_sizes(model, path)


@pytest.mark.parametrize('size', [(64, 64), (13, 9), (5, 4), (25, 31)])
@pytest.mark.parametrize('output_size', [1, 2, 3, 6, (2, 3)])
def test_dynamic_adaptive_pool_equals_the_native_one(size, output_size):
    inputs = torch.randn(2, 4, *size)
    torch.testing.assert_close(DynamicAdaptiveAvgPool2d(output_size)(inputs),
                               nn.AdaptiveAvgPool2d(output_size)(inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize('scope', sorted(DENSE_CONFIGS))
def test_the_tool_exports_upernet_and_mask_rcnn_features(scope, tmp_path):
    config = tmp_path / f'{scope}.py'
    toy_config(load_repo_config(DENSE_CONFIGS[scope]), tmp_path / 'data').dump(config)
    out = tmp_path / f'{scope}.onnx'
    shapes = ['1,64,64', '2,97,75', '3,57,83']
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'deployment' / 'pytorch2onnx.py'), str(config), 'none',
         str(out), '--shape', '64', '64', '--dynamic', '--verify', *shapes],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = [float(diff) for diff in re.findall(r'max \|onnxruntime - torch\| = (\S+)',
                                                result.stdout)]
    assert len(diffs) == len(shapes), result.stdout
    assert max(diffs) < TOLERANCE, result.stdout
    assert out.is_file()


class FeaturesAndRPNMaps(nn.Module):
    """A Mask R-CNN's backbone + FPN and its RPN head's raw maps (objectness scores and box
    deltas per level): what a deployment that decodes the proposals outside the graph runs."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs: torch.Tensor):
        features = self.detector.extract_feat(inputs)
        scores, deltas = self.detector.rpn_head(features)
        return (*features, *scores, *deltas)


def test_mask_rcnn_rpn_head_maps_export_at_any_batch_and_size(tmp_path):
    cfg = toy_config(load_repo_config(DENSE_CONFIGS['mmdet']), tmp_path / 'data')
    detector, _ = build_task_model(cfg)
    module = FeaturesAndRPNMaps(detector).eval()
    path = tmp_path / 'rpn.onnx'
    plain_export(module, path)
    assert len(onnx.load(str(path)).graph.output) == 5 * 3  # 5 FPN levels, 3 maps each
    assert_close_at_all_sizes(module, path)
