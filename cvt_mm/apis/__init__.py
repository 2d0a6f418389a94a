from .inference import (
    InferenceReport,
    build_inferencer,
    infer_images,
    input_root,
    list_images,
    output_names,
)
from .model_zoo import (
    classification_metafile,
    classifier_cfg,
    config_dir,
    dense_metafile,
    register_model_index,
)

__all__ = [
    'InferenceReport', 'build_inferencer', 'infer_images', 'input_root', 'list_images',
    'output_names',
    'classifier_cfg', 'config_dir', 'classification_metafile', 'dense_metafile',
    'register_model_index'
]
