"""Official and Hugging Face CvT checkpoints: reading them safely (:mod:`.reading`), mapping
their keys onto cvt_mm's (:mod:`.key_mapping`), converting and verifying (:mod:`.conversion`)."""
from .conversion import (
    STEPS,
    ConvertedCheckpoint,
    convert,
    convert_checkpoint,
    save_checkpoint,
    verify,
)
from .key_mapping import UnrecognisedCheckpoint, convert_state_dict, detect_format, infer_arch
from .reading import CheckpointError, SourceCheckpoint, load_source, load_tensor_file

__all__ = ['STEPS', 'CheckpointError', 'ConvertedCheckpoint', 'SourceCheckpoint',
           'UnrecognisedCheckpoint', 'convert', 'convert_checkpoint', 'convert_state_dict',
           'detect_format', 'infer_arch', 'load_source', 'load_tensor_file', 'save_checkpoint',
           'verify']
