"""Deployment: ONNX export of CvT models (the backbone, the classifier, the UperNet segmentor
and the Mask R-CNN backbone + neck) with dynamic batch and image size, and its check against
PyTorch in onnxruntime."""
from .onnx_export import (
                          DYNAMIC_AXES,
                          DetectorFeatures,
                          DynamicAdaptiveAvgPool2d,
                          build_task_model,
                          export_onnx,
                          exportable_module,
                          onnx_max_diffs,
                          replace_adaptive_pools,
                          run_onnx,
)

__all__ = ['DYNAMIC_AXES', 'DetectorFeatures', 'DynamicAdaptiveAvgPool2d', 'build_task_model',
           'export_onnx', 'exportable_module', 'onnx_max_diffs', 'replace_adaptive_pools',
           'run_onnx']
