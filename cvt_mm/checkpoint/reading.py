"""Reading official microsoft/CvT and Hugging Face CvT weights, without running code.

:func:`load_source` reads an official ``.pth`` file, a Hugging Face ``pytorch_model.bin`` /
``model.safetensors`` file, or a Hugging Face model directory (sharded or not) into one flat
state dict. Files are recognised by their first bytes, not their names: torch files are read
with ``torch.load(weights_only=True)``, which refuses pickles that reference anything but
tensors, and safetensors holds no code at all.

Every failure is a :class:`CheckpointError` whose message is one line naming the file, what was
found and what was expected.
"""
import json
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

StateDict = Dict[str, torch.Tensor]

# Hugging Face file names in a model directory, in order of preference (safetensors first:
# it cannot carry code). The index files list the shards of a sharded checkpoint.
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
HF_INDEX_FILES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')
HF_CONFIG_FILE = 'config.json'

# Containers that training scripts wrap a state dict in (official: 'state_dict' or 'model').
WRAPPER_KEYS = ('state_dict', 'model')
# DistributedDataParallel prefixes every key with this.
DDP_PREFIX = 'module.'

ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default (zip) format
PICKLE_PROTO_OPCODE = 0x80  # first byte of a pickle (torch.save's legacy format)

class CheckpointError(Exception):
    """The source cannot be converted. ``str(error)`` is a single line naming the file."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        self.problem = ' '.join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f'{self.path}: {self.problem}')


@dataclass
class SourceCheckpoint:
    """What was read from SRC."""
    path: Path  # SRC as given (file or directory)
    weights_files: List[Path]  # the files the tensors came from
    container: str  # 'file' or 'directory'
    state_dict: StateDict
    hf_config: Optional[dict] = None  # config.json of a Hugging Face directory


def _describe_bytes(head: bytes) -> str:
    if not head:
        return 'an empty file'
    printable = sum(32 <= byte < 127 or byte in b'\t\r\n' for byte in head) / len(head)
    if printable > 0.95:
        text = head[:24].decode('ascii', 'replace').splitlines()[0] if head.strip() else ''
        return f'a text file (starting {text!r})'
    return f'binary data (starting {head[:8].hex(" ")})'


def _is_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    return len(head) >= 9 and head[8:9] == b'{'


def _first_sentence(error: Exception) -> str:
    """The gist of a library's error message, which may run on for a paragraph."""
    text = ' '.join(str(error).split()) or type(error).__name__
    return text.split('. ')[0].rstrip('.')


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if 'Weights only load failed' not in message:
            raise CheckpointError(path, f'corrupt pickle data ({_first_sentence(error)}); '
                                  'expected a PyTorch checkpoint') from error
        # torch names the offending global, e.g. "Unsupported global: GLOBAL posix.system".
        culprit = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
        what = f' (it references {culprit.group(1)})' if culprit else ''
        raise CheckpointError(path, f'refusing to unpickle{what}: not a plain tensor '
                              'checkpoint; loading it could run arbitrary code') from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(path, f'truncated or corrupt PyTorch checkpoint '
                              f'({_first_sentence(error)}); expected a complete torch.save '
                              'file') from error


def _safetensors_load(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device='cpu')
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f'truncated or corrupt safetensors file '
                              f'({_first_sentence(error)}); expected a complete safetensors '
                              'file') from error


def load_tensor_file(path: Path):
    """Load one weights file, recognised by its first bytes; nothing in it is executed."""
    if not path.is_file():
        raise CheckpointError(path, 'no such file')
    try:
        size = path.stat().st_size
        with open(path, 'rb') as stream:
            head = stream.read(64)
    except OSError as error:
        raise CheckpointError(path, f'cannot read the file ({error.strerror or error})') from error
    if _is_safetensors(head):
        header_length = struct.unpack('<Q', head[:8])[0]
        if 8 + header_length > size:
            raise CheckpointError(path, f'truncated safetensors file: its header alone needs '
                                  f'{8 + header_length} bytes, the file has {size}')
        return _safetensors_load(path)
    if head.startswith(ZIP_MAGIC) or (head and head[0] == PICKLE_PROTO_OPCODE):
        return _torch_load(path)
    raise CheckpointError(path, f'not a checkpoint: found {_describe_bytes(head)}; expected a '
                          'PyTorch (.pth/.bin) or safetensors file, or a Hugging Face model '
                          'directory')


def _unwrap(path: Path, loaded) -> StateDict:
    """The state dict inside whatever the training script saved."""
    for _ in range(len(WRAPPER_KEYS) + 1):  # e.g. {'model': {'state_dict': ...}} is unusual
        if not isinstance(loaded, dict):
            break
        wrapper = next((key for key in WRAPPER_KEYS
                        if isinstance(loaded.get(key), dict)), None)
        if wrapper is None:
            break
        loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not loaded:
        found = 'an empty dict' if isinstance(loaded, dict) else f'a {type(loaded).__name__}'
        raise CheckpointError(path, f'found {found} instead of a state dict (a mapping of '
                              'names to tensors)')
    not_tensors = [key for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(path, f'found non-tensor entries (e.g. {not_tensors[:3]}) where a '
                              f'state dict was expected; top-level keys: {list(loaded)[:5]}')
    if all(key.startswith(DDP_PREFIX) for key in loaded):
        loaded = {key[len(DDP_PREFIX):]: value for key, value in loaded.items()}
    return loaded


def _hf_weights_files(directory: Path) -> List[Path]:
    for name in HF_WEIGHT_FILES:
        if (directory / name).is_file():
            return [directory / name]
    for name in HF_INDEX_FILES:
        index_path = directory / name
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text())['weight_map']
            except (ValueError, KeyError, TypeError) as error:
                raise CheckpointError(index_path, f'unreadable shard index ({error})') from error
            return [directory / shard for shard in sorted(set(weight_map.values()))]
    present = sorted(child.name for child in directory.iterdir())[:8]
    raise CheckpointError(directory, f'directory holds no weights: found {present}; expected '
                          f'one of {list(HF_WEIGHT_FILES + HF_INDEX_FILES)}')


def _read_hf_config(directory: Path) -> Optional[dict]:
    config_path = directory / HF_CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
    except ValueError as error:
        raise CheckpointError(config_path, f'not valid JSON ({error})') from error
    if not isinstance(config, dict):
        raise CheckpointError(config_path, 'expected a JSON object')
    return config


def load_source(path) -> SourceCheckpoint:
    """Read an official / HF checkpoint file or an HF model directory into a flat state dict."""
    path = Path(path)
    if path.is_dir():
        files = _hf_weights_files(path)
        state_dict: StateDict = {}
        for weights_file in files:
            state_dict.update(_unwrap(weights_file, load_tensor_file(weights_file)))
        return SourceCheckpoint(path, files, 'directory', state_dict, _read_hf_config(path))
    if not path.exists():
        raise CheckpointError(path, 'no such file or directory')
    return SourceCheckpoint(path, [path], 'file', _unwrap(path, load_tensor_file(path)))
