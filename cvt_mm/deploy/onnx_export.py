"""ONNX export of cvt_mm's models with dynamic batch and image size, checked in onnxruntime.

What is exported is the network between the data preprocessor and the post-processing: its
input is the normalised (and, for detection, padded) NCHW batch that the model's
``data_preprocessor`` produces, its outputs

* classification (mmpretrain ``ImageClassifier``): the logits, ``(B, num_classes)``;
* segmentation (mmseg ``EncoderDecoder``, UperNet): the decode head's logits at 1/4 of the
  input size, ``(B, num_classes, H/4, W/4)``, before resizing to the image;
* detection (mmdet Mask R-CNN): the neck's feature maps (backbone + FPN), one per level. The
  RPN, the RoI heads and their NMS are not exported (docs/deployment.md says why).

The classifier is exported as it is (its ``forward`` in ``mode='tensor'``), so a plain
``torch.onnx.export(model, x, dynamic_axes=...)`` gives the same graph as :func:`export_onnx`.
The segmentor's ``forward`` is exported too, but UperNet's pyramid pooling uses
``nn.AdaptiveAvgPool2d``, which the TorchScript exporter refuses for an input of dynamic size:
:func:`exportable_module` swaps those pools for :class:`DynamicAdaptiveAvgPool2d` (the same
bins, from the traced size). The detector goes through :class:`DetectorFeatures`.
"""
import copy
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from cvt_mm.engine import allow_runner_checkpoints
from cvt_mm.models import CvT
from cvt_mm.tasks import DETECTION, SEGMENTATION, task_of_config, task_of_scope

# The input's dynamic axes: batch, height and width of the NCHW image batch.
DYNAMIC_AXES = {0: 'batch', 2: 'height', 3: 'width'}
INPUT_NAME = 'input'
# The default opsets: the TorchScript exporter needs 17 for LayerNormalization and
# scaled_dot_product_attention with a scale; the dynamo exporter implements 18 and up.
DEFAULT_OPSET = 17
DEFAULT_DYNAMO_OPSET = 18


class DetectorFeatures(nn.Module):
    """An mmdet detector's ``extract_feat`` (backbone + neck) as a module to export.

    Args:
        detector (nn.Module): An mmdet detector with ``extract_feat``.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.detector.extract_feat(inputs))


class DynamicAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` written with slices and means, for ONNX export at dynamic sizes.

    Output cell (i, j) averages rows ``floor(i*H/oh)`` to ``ceil((i+1)*H/oh)`` and the same
    columns for W, as PyTorch's adaptive pooling does; the bounds are computed from the input's
    shape, which the exporter records, so the graph pools correctly at any size. Slower than
    the native op (one slice per cell): for export only.

    Args:
        output_size (int | Tuple[int, int]): The output height and width.
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]]):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if None in output_size:
            raise ValueError('DynamicAdaptiveAvgPool2d needs both output sizes')
        self.output_size = tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = self.output_size
        height, width = x.shape[2], x.shape[3]
        rows = []
        for i in range(out_h):
            band = x[:, :, (i * height) // out_h:((i + 1) * height + out_h - 1) // out_h]
            cells = [band[..., (j * width) // out_w:((j + 1) * width + out_w - 1) // out_w]
                     .mean((2, 3), keepdim=True) for j in range(out_w)]
            rows.append(torch.cat(cells, dim=3))
        return torch.cat(rows, dim=2)


def replace_adaptive_pools(module: nn.Module) -> int:
    """Swap every ``nn.AdaptiveAvgPool2d`` inside ``module`` for :class:`DynamicAdaptiveAvgPool2d`
    (in place); returns how many were swapped."""
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, DynamicAdaptiveAvgPool2d(child.output_size))
            swapped += 1
        else:
            swapped += replace_adaptive_pools(child)
    return swapped


def build_task_model(config: Union[str, Path, Config], checkpoint: Optional[str] = None,
                     device: str = 'cpu') -> Tuple[nn.Module, str]:
    """Build a config's model with its task library's own initialiser, in eval mode.

    ``mmdet.apis.init_detector``, ``mmseg.apis.init_model`` or ``mmpretrain.apis.init_model``,
    the config's task's (:attr:`cvt_mm.tasks.Task.init_model`).

    Args:
        config (str | Path | Config): The config (file or object).
        checkpoint (str, optional): Weights to load; None keeps the random initialisation.
            Defaults to None.
        device (str): Where to build the model. Defaults to 'cpu'.

    Returns:
        Tuple[nn.Module, str]: The model and its task scope ('mmpretrain', 'mmdet', 'mmseg').
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
    task = task_of_config(cfg)
    task.register_modules()
    allow_runner_checkpoints()  # checkpoints written by tools/train.py load safely
    model = task.init_model_function()(cfg, checkpoint, device=device)
    return model.eval(), task.scope


def exportable_module(model: nn.Module, scope: str) -> nn.Module:
    """The module to export for a task model (see the module docstring), a deployed copy
    (:meth:`CvT.switch_to_deploy`): the model itself (classifier), with export-friendly
    adaptive pools (segmentor), or its backbone + neck (detector).

    Args:
        model (nn.Module): A model of :func:`build_task_model`, or a bare ``CvT``.
        scope (str): Its task scope, 'mmpretrain', 'mmdet' or 'mmseg'.
    """
    task = task_of_scope(scope)
    # The deployed form of every CvT in it: BatchNorms folded into the convs, QuickGELU's
    # scalings into the MLPs' linear layers (the same eval outputs, fewer ops).
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, CvT):
            module.switch_to_deploy()
    if task is DETECTION:
        return DetectorFeatures(model)
    if task is SEGMENTATION:
        replace_adaptive_pools(model)
    return model


def flatten_outputs(outputs) -> List[torch.Tensor]:
    """The tensors of a (nested) tuple/list of outputs, in order (the ONNX graph's outputs)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for output in outputs for tensor in flatten_outputs(output)]


def output_dynamic_axes(outputs: Sequence[torch.Tensor]) -> Dict[str, Dict[int, str]]:
    """Dynamic axes of each output: the batch, and height and width of the 4-D ones."""
    axes = {}
    for i, output in enumerate(outputs):
        axes[f'output{i}'] = {0: 'batch'}
        if output.dim() == 4:
            axes[f'output{i}'].update({2: f'height{i}', 3: f'width{i}'})
    return axes


def export_onnx(module: nn.Module, out_file: Union[str, Path], shape: Tuple[int, int] = (224, 224),
                batch_size: int = 1, dynamic: bool = True, opset_version: Optional[int] = None,
                dynamo: bool = False) -> Path:
    """Export ``module`` (eval mode, no autograd: the fast inference path) to ONNX.

    Args:
        module (nn.Module): What to export, e.g. from :func:`exportable_module`.
        out_file (str | Path): The ``.onnx`` file to write.
        shape (Tuple[int, int]): Height and width of the example input. Defaults to (224, 224).
        batch_size (int): Batch size of the example input; at least 2 with ``dynamo`` and
            ``dynamic``: ``torch.export`` specialises sizes of 1, and a graph traced at batch 1
            folds the batch into other sizes (onnxruntime then fails at batch 2). Defaults to 1.
        dynamic (bool): Dynamic batch, height and width (input and outputs); otherwise the
            graph only takes the example's shape. Defaults to True.
        opset_version (int, optional): The ONNX opset; None takes 17 (TorchScript exporter)
            or 18 (dynamo). Defaults to None.
        dynamo (bool): Use the ``torch.export``-based exporter instead of the TorchScript one
            (which mmdeploy uses). Defaults to False.

    Returns:
        Path: ``out_file``.
    """
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    param = next(module.parameters())
    if dynamo and dynamic:
        batch_size = max(batch_size, 2)
    if opset_version is None:
        opset_version = DEFAULT_DYNAMO_OPSET if dynamo else DEFAULT_OPSET
    example = torch.randn(batch_size, 3, *shape, device=param.device, dtype=param.dtype)
    with torch.no_grad():
        outputs = flatten_outputs(module(example))
        output_names = [f'output{i}' for i in range(len(outputs))]
        kwargs = {}
        if dynamo:
            if dynamic:
                dim = torch.export.Dim.DYNAMIC
                kwargs['dynamic_shapes'] = ({0: dim, 2: dim, 3: dim}, )
        elif dynamic:
            kwargs['dynamic_axes'] = {INPUT_NAME: DYNAMIC_AXES, **output_dynamic_axes(outputs)}
        torch.onnx.export(module, (example, ), str(out_file), input_names=[INPUT_NAME],
                          output_names=output_names, opset_version=opset_version,
                          dynamo=dynamo, **kwargs)
    return out_file


def run_onnx(onnx_file: Union[str, Path], inputs: torch.Tensor) -> List[np.ndarray]:
    """The outputs of an exported graph in onnxruntime (CPU) for one NCHW batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    return session.run(None, {input_name: inputs.detach().cpu().numpy()})


def onnx_max_diffs(module: nn.Module, onnx_file: Union[str, Path],
                   shapes: Sequence[Tuple[int, int, int]], seed: int = 0) -> List[dict]:
    """Max absolute difference between onnxruntime and PyTorch for random inputs.

    Args:
        module (nn.Module): The PyTorch reference: the exported module, or the model it was
            made from (eval mode).
        onnx_file (str | Path): Its ONNX graph.
        shapes (Sequence[Tuple[int, int, int]]): (batch, height, width) of each input.
        seed (int): Seed of the random inputs. Defaults to 0.

    Returns:
        List[dict]: Per input ``batch``, ``height``, ``width``, ``max_abs_diff`` (over all
        outputs) and ``max_abs_output`` (the outputs' magnitude, for scale).
    """
    generator = torch.Generator().manual_seed(seed)
    param = next(module.parameters())
    results = []
    for batch, height, width in shapes:
        inputs = torch.randn(batch, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = flatten_outputs(module.eval()(inputs.to(param.device, param.dtype)))
        actual = run_onnx(onnx_file, inputs)
        if len(actual) != len(expected):
            raise RuntimeError(f'the ONNX graph has {len(actual)} outputs, PyTorch '
                               f'{len(expected)}')
        diff = max(float(np.abs(a - e.cpu().numpy()).max()) for a, e in zip(actual, expected))
        scale = max(float(e.abs().max()) for e in expected)
        results.append(dict(batch=batch, height=height, width=width, max_abs_diff=diff,
                            max_abs_output=scale))
    return results
