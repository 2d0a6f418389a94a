from .model_zoo import (
    classification_metafile,
    classifier_cfg,
    config_dir,
    dense_metafile,
    register_model_index,
)

__all__ = [
    'classifier_cfg', 'config_dir', 'classification_metafile', 'dense_metafile',
    'register_model_index'
]
