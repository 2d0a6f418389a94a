"""Turn official microsoft/CvT or Hugging Face CvT weights into an mmpretrain checkpoint.

The steps, run in order by :func:`convert_checkpoint` (``tools/convert_checkpoint.py SRC DST``
is a command line over it):

1. :func:`~cvt_mm.checkpoint.reading.load_source` reads SRC without running code.
2. :func:`convert` maps the keys onto cvt_mm's (:mod:`.key_mapping`) and reads the
   variant off the tensors, never off a file name.
3. :func:`verify` builds the classifier of that variant (``apis.classifier_cfg``), loads the
   weights strictly and runs one small forward pass.
4. :func:`save_checkpoint` writes ``{'state_dict': ..., 'meta': ...}`` to a temporary file beside
   DST and renames it, so DST is either complete or untouched.

Every failure is a :class:`~cvt_mm.checkpoint.reading.CheckpointError`: one line naming the file.
"""
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch

from ..version import __version__
from .key_mapping import (
    UnrecognisedCheckpoint,
    convert_state_dict,
    detect_format,
    infer_arch,
)
from .reading import HF_CONFIG_FILE, CheckpointError, SourceCheckpoint, StateDict, load_source

# The verification forward pass: small, but large enough for all three stages to have tokens.
VERIFY_INPUT_SHAPE = (1, 3, 64, 64)


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

    @property
    def headless(self) -> bool:
        """No classifier at all (neither head nor final LayerNorm), e.g. a Hugging Face
        ``CvtModel``: the weights initialise a dense backbone, not a classifier."""
        return not any(key.startswith(('head.', 'backbone.cls_norm.'))
                       for key in self.state_dict)

    def classifier_cfg(self) -> dict:
        from ..apis import classifier_cfg
        return classifier_cfg(self.variant or self.arch, self.num_classes or 1000,
                                  in_channels=self.in_channels,
                                  with_cls_token=self.with_cls_token)



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
        raise CheckpointError(source.path, error) from error
    except KeyError as error:  # a stage without its patch embedding, e.g. a partial file
        raise CheckpointError(source.path, f'incomplete CvT checkpoint: missing {error}') from error

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
        notes.append("Hugging Face's CvT computes exact GELU where the official CvT (which "
                     'trained these weights) computes QuickGELU; set '
                     "model.backbone.act_cfg=dict(type='GELU') to reproduce HF's outputs.")
    converted = ConvertedCheckpoint(state_dict, source_format, variant, arch,
                                    info['num_classes'], info['in_channels'],
                                    list(info['with_cls_token']), num_heads_source, notes)
    if converted.headless:
        notes.append('no classifier head was present (a headless backbone, e.g. a Hugging Face '
                     'CvtModel): the result initialises the backbone of a detection or '
                     "segmentation config (init_cfg Pretrained, prefix 'backbone.'), not an "
                     'ImageNet classifier.')
    return converted



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
    model_cfg = converted.classifier_cfg()
    if converted.headless:
        # No cls-token norm to classify with: check it as the dense backbone it will start.
        model_cfg = dict(model_cfg.backbone, out_type='featmap',
                         out_indices=tuple(range(len(converted.arch['depths']))),
                         out_norm=False)
    try:
        with torch.device('meta'):
            model = MODELS.build(model_cfg)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(source_path, f'weights describe a CvT that cannot be built '
                              f'({arch_name}): {error}') from error
    if converted.headless:  # a bare backbone: its keys without the 'backbone.' prefix
        expected = {f'backbone.{key}': value for key, value in model.state_dict().items()}
    else:
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
    if converted.headless:
        model.load_state_dict({key[len('backbone.'):]: value for key, value in as_float.items()},
                              strict=True, assign=True)
    else:
        model.load_state_dict(as_float, strict=converted.num_classes is not None, assign=True)
    if converted.num_classes is None and not converted.headless:
        model = model.backbone
    model.eval()
    with torch.no_grad():
        output = model(torch.randn(*VERIFY_INPUT_SHAPE, generator=torch.Generator()
                                   .manual_seed(0)))
    output = output if isinstance(output, torch.Tensor) else output[-1]
    if not torch.isfinite(output).all():
        raise CheckpointError(source_path, f'the converted {arch_name} produces non-finite '
                              'outputs (NaN/inf in the weights?)')



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
        classifier=not converted.headless,
        cvt_mm_version=__version__,
        converter='cvt_mm.checkpoint',
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
    target = 'backbone' if converted.headless else 'classifier'
    on_step('verify', f'verifying: loading into a {name} {target}')
    verify(converted, source.path)
    on_step('save', f'writing {dst}')
    meta = checkpoint_meta(converted, source)
    try:
        save_checkpoint(dict(state_dict=converted.state_dict, meta=meta), dst)
    except OSError as error:
        raise CheckpointError(dst, f'cannot write the converted checkpoint ({error})') from error
    meta['notes'] = converted.notes
    return meta
