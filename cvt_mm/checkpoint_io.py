"""Turn official microsoft/CvT or Hugging Face CvT weights into an mmpretrain checkpoint.

The command line is ``tools/convert_checkpoint.py SRC DST``; the steps live here so tests and
other tools can call them:

1. :func:`load_source` reads SRC, which may be an official ``.pth`` file, a Hugging Face
   ``pytorch_model.bin`` / ``model.safetensors`` file, or a Hugging Face model directory. Files
   are recognised by their first bytes, not their names, and read without running code:
   ``torch.load(weights_only=True)`` refuses pickles that reference anything but tensors, and
   safetensors holds no code at all.
2. :func:`convert` maps the keys onto cvt_mm's (``weight_conversion.convert_state_dict``) and
   reads the variant off the tensors (``weight_conversion.infer_arch``), never off a file name.
3. :func:`verify` builds ``cvt_classifier_cfg`` for that variant, loads the weights strictly and
   runs one small forward pass.
4. :func:`save_checkpoint` writes ``{'state_dict': ..., 'meta': ...}`` to a temporary file beside
   DST and renames it, so DST is either complete or untouched.

Every failure is a :class:`CheckpointError` whose message is one line naming the file, what was
found and what was expected.
"""
import argparse
import json
import os
import pickle
import re
import struct
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .models.weight_conversion import (UnrecognisedCheckpoint, convert_state_dict,
                                       detect_format, infer_arch)
from .version import __version__

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

# The verification forward pass: small, but large enough for all three stages to have tokens.
VERIFY_INPUT_SHAPE = (1, 3, 64, 64)


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


@dataclass
class ConvertedCheckpoint:
    """The cvt_mm state dict and what was learnt about the model."""
    state_dict: StateDict
    source_format: str  # 'official', 'hf' or 'mmpretrain' (already converted)
    variant: Optional[str]  # '13', '21', 'w24' or None for a custom arch
    arch: dict  # embed_dims, depths, num_heads
    num_classes: Optional[int]
    in_channels: int
    with_cls_token: List[bool]
    num_heads_source: str  # the tensors cannot tell the head count; where it came from
    notes: List[str] = field(default_factory=list)

    def classifier_cfg(self) -> dict:
        from .models.classifier import cvt_classifier_cfg
        return cvt_classifier_cfg(self.variant or self.arch, self.num_classes or 1000,
                                  in_channels=self.in_channels,
                                  with_cls_token=self.with_cls_token)


# ---------------------------------------------------------------------------------------------
# 1. Reading
# ---------------------------------------------------------------------------------------------

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
                                  'expected a PyTorch checkpoint')
        # torch names the offending global, e.g. "Unsupported global: GLOBAL posix.system".
        culprit = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
        what = f' (it references {culprit.group(1)})' if culprit else ''
        raise CheckpointError(path, f'refusing to unpickle{what}: not a plain tensor '
                              'checkpoint; loading it could run arbitrary code')
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(path, f'truncated or corrupt PyTorch checkpoint '
                              f'({_first_sentence(error)}); expected a complete torch.save file')


def _safetensors_load(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device='cpu')
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f'truncated or corrupt safetensors file '
                              f'({_first_sentence(error)}); expected a complete safetensors file')


def load_tensor_file(path: Path):
    """Load one weights file, recognised by its first bytes; nothing in it is executed."""
    if not path.is_file():
        raise CheckpointError(path, 'no such file')
    try:
        size = path.stat().st_size
        with open(path, 'rb') as stream:
            head = stream.read(64)
    except OSError as error:
        raise CheckpointError(path, f'cannot read the file ({error.strerror or error})')
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
                raise CheckpointError(index_path, f'unreadable shard index ({error})')
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
        raise CheckpointError(config_path, f'not valid JSON ({error})')
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


# ---------------------------------------------------------------------------------------------
# 2. Converting
# ---------------------------------------------------------------------------------------------

def _hf_num_heads(source: SourceCheckpoint, num_stages: int) -> Optional[List[int]]:
    heads = (source.hf_config or {}).get('num_heads')
    if isinstance(heads, list) and len(heads) == num_stages and all(
            isinstance(count, int) and count > 0 for count in heads):
        return heads
    return None


def convert(source: SourceCheckpoint) -> ConvertedCheckpoint:
    """Rename the keys to cvt_mm's and read the variant off the tensors."""
    source_format = detect_format(source.state_dict)
    try:
        state_dict = convert_state_dict(source.state_dict, source_format)
        info = infer_arch(state_dict)
    except UnrecognisedCheckpoint as error:
        raise CheckpointError(source.path, error)
    except KeyError as error:  # a stage without its patch embedding, e.g. a partial file
        raise CheckpointError(source.path, f'incomplete CvT checkpoint: missing {error}')

    arch = {key: list(info['arch'][key]) for key in ('embed_dims', 'depths', 'num_heads')}
    variant = info['name']
    num_heads_source = f'official CvT-{variant}' if variant else 'one head per 64 channels'
    config_heads = _hf_num_heads(source, len(arch['depths']))
    if config_heads is not None:
        num_heads_source = f'{HF_CONFIG_FILE} of the Hugging Face directory'
        if config_heads != arch['num_heads']:
            arch['num_heads'] = config_heads
            variant = None  # not an official variant after all: keep the explicit arch

    notes = []
    if source_format == 'hf':
        notes.append("Hugging Face's CvtForImageClassification computes exact GELU where the "
                     'official CvT (which trained these weights) computes QuickGELU; set '
                     "model.backbone.act_cfg=dict(type='GELU') to reproduce HF's logits.")
    return ConvertedCheckpoint(state_dict, source_format, variant, arch, info['num_classes'],
                               info['in_channels'], list(info['with_cls_token']),
                               num_heads_source, notes)


# ---------------------------------------------------------------------------------------------
# 3. Verifying
# ---------------------------------------------------------------------------------------------

def _sample(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def verify(converted: ConvertedCheckpoint, source_path) -> None:
    """Build the classifier the checkpoint claims to be, load it strictly and run it once.

    The model is built on the meta device and the checkpoint tensors are assigned into it, so
    even CvT-W24 costs no second copy of its weights.
    """
    from mmpretrain.registry import MODELS

    arch_name = f'CvT-{converted.variant}' if converted.variant else f'CvT {converted.arch}'
    try:
        with torch.device('meta'):
            model = MODELS.build(converted.classifier_cfg())
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(source_path, f'weights describe a CvT that cannot be built '
                              f'({arch_name}): {error}')
    expected = model.state_dict()
    if converted.num_classes is None:  # backbone-only checkpoint: check what is there
        expected = {key: value for key, value in expected.items()
                    if not key.startswith('head.')}
    found = converted.state_dict
    missing = expected.keys() - found.keys()
    unexpected = found.keys() - expected.keys()
    mismatched = [key for key in expected.keys() & found.keys()
                  if expected[key].shape != found[key].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f'{len(missing)} missing ({_sample(missing)})')
        if unexpected:
            problems.append(f'{len(unexpected)} unexpected ({_sample(unexpected)})')
        if mismatched:
            problems.append(f'{len(mismatched)} of the wrong shape ({_sample(mismatched)})')
        raise CheckpointError(source_path, f'converted weights do not fit {arch_name}: '
                              + '; '.join(problems))

    # Half-precision sources are checked in float32; assigning keeps the checked tensors alive
    # only as long as the model, which dies at the end of this function.
    as_float = {key: value.float() if value.is_floating_point() else value
                for key, value in found.items()}
    model.load_state_dict(as_float, strict=converted.num_classes is not None, assign=True)
    if converted.num_classes is None:
        model = model.backbone
    model.eval()
    with torch.no_grad():
        output = model(torch.randn(*VERIFY_INPUT_SHAPE, generator=torch.Generator()
                                   .manual_seed(0)))
    output = output if isinstance(output, torch.Tensor) else output[-1]
    if not torch.isfinite(output).all():
        raise CheckpointError(source_path, f'the converted {arch_name} produces non-finite '
                              'outputs (NaN/inf in the weights?)')


# ---------------------------------------------------------------------------------------------
# 4. Saving
# ---------------------------------------------------------------------------------------------

def checkpoint_meta(converted: ConvertedCheckpoint, source: SourceCheckpoint) -> dict:
    """Plain Python values only, so ``torch.load(weights_only=True)`` reads the result."""
    return dict(
        source_format=converted.source_format,
        source_container=source.container,
        source_path=str(source.path.resolve()),
        source_files=[str(path.resolve()) for path in source.weights_files],
        variant=converted.variant,
        arch=converted.arch,
        num_heads_source=converted.num_heads_source,
        in_channels=converted.in_channels,
        with_cls_token=converted.with_cls_token,
        num_classes=converted.num_classes,
        cvt_mm_version=__version__,
        converter='cvt_mm.checkpoint_io',
    )


def save_checkpoint(checkpoint: dict, dst) -> Path:
    """torch.save to a temporary file in DST's directory, then rename: never a partial DST."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=dst.parent, prefix=f'.{dst.name}.', suffix='.tmp')
    os.close(handle)
    try:
        torch.save(checkpoint, temp_name)
        os.replace(temp_name, dst)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return dst


# ---------------------------------------------------------------------------------------------
# All steps
# ---------------------------------------------------------------------------------------------

STEPS = ('load', 'convert', 'verify', 'save')


def convert_checkpoint(src, dst, on_step: Callable[[str, str], None] = lambda step, text: None
                       ) -> dict:
    """Convert SRC to an mmpretrain checkpoint at DST and return its meta.

    ``on_step(step, description)`` is called as each of :data:`STEPS` begins (for progress
    display). Raises :class:`CheckpointError`.
    """
    on_step('load', f'reading {src}')
    source = load_source(src)
    on_step('convert', f'converting {len(source.state_dict)} tensors')
    converted = convert(source)
    name = f'CvT-{converted.variant}' if converted.variant else 'custom CvT'
    on_step('verify', f'verifying: loading into a {name} classifier')
    verify(converted, source.path)
    on_step('save', f'writing {dst}')
    meta = checkpoint_meta(converted, source)
    try:
        save_checkpoint(dict(state_dict=converted.state_dict, meta=meta), dst)
    except OSError as error:
        raise CheckpointError(dst, f'cannot write the converted checkpoint ({error})')
    meta['notes'] = converted.notes
    return meta


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        prog='convert_checkpoint.py',
        description='Convert official microsoft/CvT (.pth) or Hugging Face CvT weights (a model '
                    'directory, pytorch_model.bin or model.safetensors) into an mmpretrain '
                    'checkpoint for cvt_mm. The variant is read off the tensors.')
    parser.add_argument('src', help='official .pth, HF weights file or HF model directory')
    parser.add_argument('dst', help='output .pth (its directory is created)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    args = parse_args(argv)
    # Progress and results go to stdout, so that on failure stderr holds only the error line.
    console = Console(file=sys.stdout)
    # Only on a terminal: in a log the bar's frames are noise.
    progress = Progress(SpinnerColumn(), TextColumn('{task.description}'), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal)
    task = progress.add_task('starting', total=len(STEPS))

    def on_step(step: str, description: str) -> None:
        progress.update(task, completed=STEPS.index(step), description=description)

    # Library warnings (import-time deprecations in mmcv/mmpretrain, torch's remarks on a
    # pickle's protocol) say nothing about the conversion, whose result is verified instead,
    # and would break the one-line error on stderr: they are recorded and dropped.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        try:
            with progress:
                meta = convert_checkpoint(args.src, args.dst, on_step)
                progress.update(task, completed=len(STEPS))
        except CheckpointError as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f'error: {args.src}: interrupted; {args.dst} was not written',
                  file=sys.stderr)
            return 130

    name = f"CvT-{meta['variant']}" if meta['variant'] else f"custom CvT {meta['arch']}"
    classes = meta['num_classes'] if meta['num_classes'] is not None else 'no'
    console.print(f"converted {meta['source_format']} {meta['source_container']} "
                  f'{args.src} -> {args.dst}: {name}, {classes} classes, '
                  f"heads from {meta['num_heads_source']}", highlight=False, soft_wrap=True)
    for note in meta['notes']:
        console.print(f'note: {note}', highlight=False, soft_wrap=True)
    return 0
