"""Map official (microsoft/CvT) and Hugging Face CvT state dicts onto cvt_mm's key names.

cvt_mm's classifier is mmpretrain's ``ImageClassifier`` with a ``CvT`` backbone and a
``LinearClsHead``, so converted keys are ``backbone.*`` and ``head.fc.*``. The variant is
inferred from the tensors themselves (widths, depths), never from a file name.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch

from ..models.backbones.cvt import CvT

# (pattern, replacement) applied in order to each key; a key that no rule matches is
# reported as unrecognised.
OFFICIAL_RULES: List[Tuple[str, str]] = [
    (r'^stage(\d+)\.', r'backbone.stages.\1.'),
    (r'^norm\.', 'backbone.cls_norm.'),
    (r'^head\.', 'head.fc.'),
]

# Hugging Face's encoder keys: ``cvt.encoder.*`` in CvtForImageClassification, ``encoder.*`` in
# a headless CvtModel (what AutoModel saves), which has no final LayerNorm and no classifier.
HF_ENCODER = r'(?:cvt\.)?encoder\.'

HF_RULES: List[Tuple[str, str]] = [
    (rf'^{HF_ENCODER}stages\.(\d+)\.embedding\.convolution_embeddings\.projection\.',
     r'backbone.stages.\1.patch_embed.proj.'),
    (rf'^{HF_ENCODER}stages\.(\d+)\.embedding\.convolution_embeddings\.normalization\.',
     r'backbone.stages.\1.patch_embed.norm.'),
    (rf'^{HF_ENCODER}stages\.(\d+)\.cls_token$', r'backbone.stages.\1.cls_token'),
    (rf'^{HF_ENCODER}stages\.(\d+)\.layers\.(\d+)\.', r'backbone.stages.\1.blocks.\2.'),
    (r'\.attention\.attention\.convolution_projection_(query|key|value)'
     r'\.convolution_projection\.convolution\.', r'.attn.conv_proj_\1.conv.'),
    (r'\.attention\.attention\.convolution_projection_(query|key|value)'
     r'\.convolution_projection\.normalization\.', r'.attn.conv_proj_\1.bn.'),
    (r'\.attention\.attention\.projection_(query|key|value)\.', r'.attn.proj_\1.'),
    (r'(conv_proj_|proj_)query\.', r'\1q.'),
    (r'(conv_proj_|proj_)key\.', r'\1k.'),
    (r'(conv_proj_|proj_)value\.', r'\1v.'),
    (r'\.attention\.output\.dense\.', '.attn.proj.'),
    (r'\.intermediate\.dense\.', '.mlp.fc1.'),
    (r'\.output\.dense\.', '.mlp.fc2.'),
    (r'\.layernorm_before\.', '.norm1.'),
    (r'\.layernorm_after\.', '.norm2.'),
    (r'^layernorm\.', 'backbone.cls_norm.'),
    (r'^classifier\.', 'head.fc.'),
]

# A key of ours is complete when it names a module path we build.
_CONVERTED_KEY = re.compile(
    r'^(backbone\.(stages\.\d+\.(patch_embed\.(proj|norm)\.\w+|cls_token|'
    r'blocks\.\d+\.(norm1|norm2|attn\.(conv_proj_[qkv]\.(conv|bn)|proj_[qkv]|proj)|'
    r'mlp\.fc[12])\.\w+)|cls_norm\.\w+)|head\.fc\.\w+)$')


class UnrecognisedCheckpoint(ValueError):
    """The state dict is not a CvT checkpoint of the expected format."""


def detect_format(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """'official', 'hf', 'mmpretrain' or None, from the key names.

    'hf' covers ``CvtForImageClassification`` (``cvt.encoder.*``, ``layernorm.*``,
    ``classifier.*``) and the headless ``CvtModel`` (``encoder.*`` only, or ``cvt.encoder.*``
    only when the classifier's encoder was saved alone).
    """
    keys = list(state_dict)
    if any(re.match(rf'^{HF_ENCODER}stages\.', key) for key in keys):
        return 'hf'  # a classifier (cvt.encoder.*) or a headless CvtModel (encoder.*)
    if any(re.match(r'^stage\d+\.patch_embed\.proj\.weight$', key) for key in keys):
        return 'official'
    if any(re.match(r'^backbone\.stages\.\d+\.patch_embed\.proj\.weight$', key) for key in keys):
        return 'mmpretrain'
    return None


def _rename(state_dict: Dict[str, torch.Tensor], rules: List[Tuple[str, str]],
            source: str) -> Dict[str, torch.Tensor]:
    converted, unrecognised = {}, []
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in rules:
            new_key = re.sub(pattern, replacement, new_key)
        if _CONVERTED_KEY.match(new_key):
            converted[new_key] = value
        else:
            unrecognised.append(key)
    if unrecognised:
        raise UnrecognisedCheckpoint(
            f'{len(unrecognised)} keys are not {source} CvT keys, e.g. {unrecognised[:3]}')
    return converted


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       source_format: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Official or HF CvT state dict -> cvt_mm (mmpretrain ImageClassifier) keys."""
    source_format = source_format or detect_format(state_dict)
    if source_format == 'official':
        return _rename(state_dict, OFFICIAL_RULES, 'official microsoft/CvT')
    if source_format == 'hf':
        # HF keeps a per-layer `pruned_heads`-free state; nothing else to drop.
        return _rename(state_dict, HF_RULES, 'Hugging Face')
    if source_format == 'mmpretrain':
        return _rename(state_dict, [], 'cvt_mm')
    example = list(state_dict)[:3]
    raise UnrecognisedCheckpoint(
        'not a CvT checkpoint: expected official keys like "stage0.patch_embed.proj.weight" or '
        'Hugging Face keys like "cvt.encoder.stages.0..." (CvtModel: "encoder.stages.0..."), '
        f'found e.g. {example}')


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Variant settings read off a converted state dict: widths, depths, heads, classes.

    The head count cannot be read from tensors; it is taken from the official variant with the
    same widths and depths, else from the official ratio of one head per 64 channels.
    """
    stage_ids = sorted({int(m.group(1)) for key in state_dict
                        for m in [re.match(r'^backbone\.stages\.(\d+)\.', key)] if m})
    if not stage_ids:
        raise UnrecognisedCheckpoint('no backbone.stages.* tensors found')
    embed_dims, depths = [], []
    for stage in stage_ids:
        embed_dims.append(state_dict[f'backbone.stages.{stage}.patch_embed.proj.weight'].shape[0])
        block_ids = {int(m.group(1)) for key in state_dict
                     for m in [re.match(rf'^backbone\.stages\.{stage}\.blocks\.(\d+)\.', key)] if m}
        depths.append(len(block_ids))
    name = next((name for name, arch in CvT.arch_zoo.items()
                 if arch['embed_dims'] == embed_dims and arch['depths'] == depths), None)
    if name is not None:
        arch = dict(CvT.arch_zoo[name])
    else:
        arch = dict(embed_dims=embed_dims, depths=depths,
                    num_heads=[max(1, dims // 64) for dims in embed_dims])
    head = state_dict.get('head.fc.weight')
    return dict(name=name, arch=arch, in_channels=state_dict[
        f'backbone.stages.{stage_ids[0]}.patch_embed.proj.weight'].shape[1],
                num_classes=None if head is None else head.shape[0],
                with_cls_token=[f'backbone.stages.{s}.cls_token' in state_dict
                                for s in stage_ids])
