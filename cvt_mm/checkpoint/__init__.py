"""Official and Hugging Face CvT checkpoints: reading them safely, converting and verifying."""
from .conversion import (
                         STEPS,
                         ConvertedCheckpoint,
                         convert,
                         convert_checkpoint,
                         save_checkpoint,
                         verify,
)
from .reading import CheckpointError, SourceCheckpoint, load_source, load_tensor_file

__all__ = ['STEPS', 'CheckpointError', 'ConvertedCheckpoint', 'SourceCheckpoint', 'convert',
           'convert_checkpoint', 'load_source', 'load_tensor_file', 'save_checkpoint', 'verify']
