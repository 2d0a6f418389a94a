"""tools/convert_checkpoint.py: official and Hugging Face weights in, mmpretrain checkpoints out.

The official-format state dicts here are built from the official key list and module shapes
(microsoft/CvT lib/models/cls_cvt.py), and their logits come from a small functional forward
pass written against those names, so neither side reuses cvt_mm's key mapping or modules.
"""
import copy
import pickle
import subprocess
import sys
from pathlib import Path

import convert_checkpoint as convert_tool
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT as REPO
from mmengine.config import Config
from mmpretrain.registry import MODELS

import cvt_mm  # noqa: F401  (registers CvT)
from cvt_mm import checkpoint
from cvt_mm.testing import FAST_TEST_ARCH, random_hf_classifier

CONVERTER = REPO / 'tools' / 'convert_checkpoint.py'
CVT13_CONFIG = REPO / 'configs' / 'cvt13_in1k.py'

# The official variants as their experiment files define them (widths, depths, heads).
OFFICIAL_SPECS = {
    '13': ([64, 192, 384], [1, 2, 10], [1, 3, 6]),
    '21': ([64, 192, 384], [1, 4, 16], [1, 3, 6]),
    'w24': ([192, 768, 1024], [2, 2, 20], [3, 12, 16]),
}
PATCH_KERNELS, PATCH_STRIDES, PATCH_PADDINGS = (7, 3, 3), (4, 2, 2), (2, 1, 1)
MLP_RATIO = 4


# ------------------------------------------------------------------------------------------
# An official-format checkpoint, independent of cvt_mm
# ------------------------------------------------------------------------------------------

def official_shapes(dims, depths, num_classes=1000, in_channels=3):
    """Key -> shape of microsoft/CvT's ConvolutionalVisionTransformer (cls token in stage 2)."""
    shapes = {}
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        previous = in_channels if i == 0 else dims[i - 1]
        stage = f'stage{i}.'
        kernel = PATCH_KERNELS[i]
        shapes[stage + 'patch_embed.proj.weight'] = (dim, previous, kernel, kernel)
        shapes[stage + 'patch_embed.proj.bias'] = (dim, )
        shapes[stage + 'patch_embed.norm.weight'] = (dim, )
        shapes[stage + 'patch_embed.norm.bias'] = (dim, )
        if i == len(dims) - 1:
            shapes[stage + 'cls_token'] = (1, 1, dim)
        for j in range(depth):
            block = f'{stage}blocks.{j}.'
            for norm in ('norm1', 'norm2'):
                shapes[f'{block}{norm}.weight'] = (dim, )
                shapes[f'{block}{norm}.bias'] = (dim, )
            for qkv in 'qkv':
                conv_proj = f'{block}attn.conv_proj_{qkv}.'
                shapes[conv_proj + 'conv.weight'] = (dim, 1, 3, 3)
                for name in ('weight', 'bias', 'running_mean', 'running_var'):
                    shapes[f'{conv_proj}bn.{name}'] = (dim, )
                shapes[conv_proj + 'bn.num_batches_tracked'] = ()
                shapes[f'{block}attn.proj_{qkv}.weight'] = (dim, dim)
                shapes[f'{block}attn.proj_{qkv}.bias'] = (dim, )
            shapes[block + 'attn.proj.weight'] = (dim, dim)
            shapes[block + 'attn.proj.bias'] = (dim, )
            shapes[block + 'mlp.fc1.weight'] = (dim * MLP_RATIO, dim)
            shapes[block + 'mlp.fc1.bias'] = (dim * MLP_RATIO, )
            shapes[block + 'mlp.fc2.weight'] = (dim, dim * MLP_RATIO)
            shapes[block + 'mlp.fc2.bias'] = (dim, )
    shapes['norm.weight'] = (dims[-1], )
    shapes['norm.bias'] = (dims[-1], )
    shapes['head.weight'] = (num_classes, dims[-1])
    shapes['head.bias'] = (num_classes, )
    return shapes


def random_official_state_dict(dims, depths, num_classes=1000, seed=0, device='cpu'):
    """Random weights at the scale of a trained net: norms and BN statistics away from identity,
    so that a swapped or dropped tensor changes the logits."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in official_shapes(dims, depths, num_classes).items():
        if device == 'meta':
            state_dict[key] = torch.empty(shape, device='meta', dtype=(
                torch.long if key.endswith('num_batches_tracked') else torch.float32))
            continue
        noise = torch.randn(shape, generator=generator)
        if key.endswith('num_batches_tracked'):
            value = torch.tensor(1000)
        elif key.endswith('running_var'):
            value = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith(('norm1.weight', 'norm2.weight', 'norm.weight', 'bn.weight')):
            value = 1 + 0.2 * noise
        elif key.endswith('patch_embed.proj.weight') or key.endswith('conv.weight'):
            fan_in = shape[1] * shape[2] * shape[3]
            value = noise / fan_in ** 0.5
        elif len(shape) == 2:  # Linear
            value = noise / shape[1] ** 0.5
        else:  # biases, running means, cls token
            value = 0.1 * noise
        state_dict[key] = value
    return state_dict


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def official_projection(state_dict, block, qkv, stride, feature_map, cls_part, heads):
    """One of a block's q, k, v: the dw_bn conv projection at ``stride``, the cls token (if
    any) in front, the linear projection, split into heads: (B, heads, L, dim / heads)."""
    conv_proj = f'{block}attn.conv_proj_{qkv}.'
    batch, dim = feature_map.shape[:2]
    y = F.conv2d(feature_map, state_dict[conv_proj + 'conv.weight'], None, stride, 1,
                 groups=dim)
    y = F.batch_norm(y, state_dict[conv_proj + 'bn.running_mean'],
                     state_dict[conv_proj + 'bn.running_var'], state_dict[conv_proj + 'bn.weight'],
                     state_dict[conv_proj + 'bn.bias'], training=False, eps=1e-5)
    y = y.flatten(2).transpose(1, 2)
    if cls_part is not None:
        y = torch.cat((cls_part, y), dim=1)
    y = F.linear(y, state_dict[f'{block}attn.proj_{qkv}.weight'],
                 state_dict[f'{block}attn.proj_{qkv}.bias'])
    return y.reshape(batch, y.shape[1], heads, dim // heads).transpose(1, 2)


def official_logits(state_dict, images, num_heads):
    """The official CvT forward pass (dw_bn projections, QuickGELU), read off the key names."""

    def get(name):
        return state_dict[name]

    def layer_norm(x, prefix):
        return F.layer_norm(x, x.shape[-1:], get(prefix + '.weight'), get(prefix + '.bias'),
                            eps=1e-5)

    x = images
    cls_token = None
    for i, heads in enumerate(num_heads):
        stage = f'stage{i}.'
        x = F.conv2d(x, get(stage + 'patch_embed.proj.weight'),
                     get(stage + 'patch_embed.proj.bias'), stride=PATCH_STRIDES[i],
                     padding=PATCH_PADDINGS[i])
        batch, dim, height, width = x.shape
        tokens = layer_norm(x.flatten(2).transpose(1, 2), stage + 'patch_embed.norm')
        has_cls = stage + 'cls_token' in state_dict
        if has_cls:
            tokens = torch.cat((get(stage + 'cls_token').expand(batch, -1, -1), tokens), dim=1)
        j = 0
        while f'{stage}blocks.{j}.norm1.weight' in state_dict:
            block = f'{stage}blocks.{j}.'
            normed = layer_norm(tokens, block + 'norm1')
            if has_cls:
                cls_part, normed = normed[:, :1], normed[:, 1:]
            feature_map = normed.transpose(1, 2).reshape(batch, dim, height, width)

            q, k, v = [official_projection(state_dict, block, qkv, stride, feature_map,
                                           cls_part if has_cls else None, heads)
                       for qkv, stride in (('q', 1), ('k', 2), ('v', 2))]
            attention = torch.softmax(q @ k.transpose(-2, -1) * dim ** -0.5, dim=-1)
            attended = (attention @ v).transpose(1, 2).reshape(batch, -1, dim)
            tokens = tokens + F.linear(attended, get(block + 'attn.proj.weight'),
                                       get(block + 'attn.proj.bias'))
            hidden = quick_gelu(F.linear(layer_norm(tokens, block + 'norm2'),
                                         get(block + 'mlp.fc1.weight'),
                                         get(block + 'mlp.fc1.bias')))
            tokens = tokens + F.linear(hidden, get(block + 'mlp.fc2.weight'),
                                       get(block + 'mlp.fc2.bias'))
            j += 1
        if has_cls:
            cls_token, tokens = tokens[:, :1], tokens[:, 1:]
        x = tokens.transpose(1, 2).reshape(batch, dim, height, width)
    features = layer_norm(cls_token[:, 0], 'norm')
    return F.linear(features, get('head.weight'), get('head.bias'))


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------

def run_converter(src, dst):
    return subprocess.run([sys.executable, str(CONVERTER), str(src), str(dst)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def load_converted(path):
    # weights_only: the converter's output must itself be a plain, safely loadable checkpoint.
    return torch.load(path, map_location='cpu', weights_only=True)


def cvt13_config(**backbone_overrides):
    """configs/cvt13_in1k.py, its backbone optionally with another arch / activation; its model
    builds in mmpretrain's scope, whatever scope an earlier test left current."""
    cfg = Config.fromfile(str(CVT13_CONFIG))
    cfg.model._scope_ = 'mmpretrain'
    cfg.model.backbone.update(backbone_overrides)
    if 'arch' in backbone_overrides and isinstance(backbone_overrides['arch'], dict):
        cfg.model.head.in_channels = backbone_overrides['arch']['embed_dims'][-1]
    return cfg


@pytest.fixture(scope='module')
def official_cvt13():
    return random_official_state_dict(*OFFICIAL_SPECS['13'][:2], seed=1)


# ------------------------------------------------------------------------------------------
# (a) official checkpoints
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def cli_converted_cvt13(tmp_path_factory, official_cvt13):
    """official_cvt13 saved as the official release would be, converted by the command line."""
    tmp_path = tmp_path_factory.mktemp('official')
    src = tmp_path / 'CvT-13-224x224-IN-1k.pth'
    torch.save({'model': official_cvt13}, src)  # wrapped, as some training scripts save
    dst = tmp_path / 'new' / 'dir' / 'cvt13_in1k.pth'  # directories are created
    return src, dst, run_converter(src, dst)


def test_official_checkpoint_converts_and_matches_official_arithmetic(cli_converted_cvt13,
                                                                       official_cvt13):
    src, dst, result = cli_converted_cvt13
    assert result.returncode == 0, result.stderr
    assert 'CvT-13' in result.stdout and result.stderr.strip() == ''

    checkpoint = load_converted(dst)
    meta = checkpoint['meta']
    assert meta['source_format'] == 'official' and meta['source_container'] == 'file'
    assert meta['variant'] == '13' and meta['num_classes'] == 1000
    assert meta['arch'] == dict(embed_dims=[64, 192, 384], depths=[1, 2, 10], num_heads=[1, 3, 6])
    assert meta['source_path'] == str(src.resolve())
    assert meta['cvt_mm_version'] == cvt_mm.__version__
    assert all(key.startswith(('backbone.', 'head.fc.')) for key in checkpoint['state_dict'])

    cfg = cvt13_config()
    model = MODELS.build(cfg.model)
    incompatible = model.load_state_dict(checkpoint['state_dict'], strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    # Non-square, so that a height/width mix-up in a reshape shows.
    images = torch.randn(2, 3, 160, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model.eval()(images, mode='tensor')
        expected = official_logits(official_cvt13, images, OFFICIAL_SPECS['13'][2])
    assert logits.shape == (2, 1000)
    assert expected.std() > 0.1  # a real comparison, not one between near-constant tensors
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('wrapper', ['state_dict', 'model', None])
def test_wrappers_and_ddp_prefix_are_unwrapped(tmp_path, wrapper):
    dims, depths = [16, 32, 48], [1, 1, 2]
    state_dict = random_official_state_dict(dims, depths, num_classes=5)
    saved = {'module.' + key: value for key, value in state_dict.items()}  # DDP-style keys
    if wrapper is not None:
        saved = {wrapper: saved, 'epoch': 300}
    src = tmp_path / 'trained.pth'
    torch.save(saved, src)
    meta = checkpoint.convert_checkpoint(src, tmp_path / 'out.pth')
    assert meta['arch']['embed_dims'] == dims and meta['arch']['depths'] == depths
    converted = load_converted(tmp_path / 'out.pth')['state_dict']
    torch.testing.assert_close(converted['head.fc.weight'], state_dict['head.weight'])
    torch.testing.assert_close(converted['backbone.stages.2.cls_token'],
                               state_dict['stage2.cls_token'])


# ------------------------------------------------------------------------------------------
# (b) Hugging Face model directories and files
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('safe_serialization', [True, False], ids=['safetensors', 'bin'])
def test_hf_directory_converts_and_matches_hf_logits(tmp_path, capsys, safe_serialization):
    hf_model = random_hf_classifier(FAST_TEST_ARCH, num_labels=7)
    hf_dir = tmp_path / 'cvt-tiny'
    hf_model.save_pretrained(hf_dir, safe_serialization=safe_serialization)
    weights_name = 'model.safetensors' if safe_serialization else 'pytorch_model.bin'
    assert (hf_dir / weights_name).is_file()
    dst = tmp_path / 'converted.pth'

    # The command-line entry point, in-process (tests (a) and (d) run the real subprocess).
    assert convert_tool.main([str(hf_dir), str(dst)]) == 0
    output = capsys.readouterr()
    assert output.err == '' and 'GELU' in output.out  # the activation note for HF sources

    checkpoint = load_converted(dst)
    meta = checkpoint['meta']
    assert meta['source_format'] == 'hf' and meta['source_container'] == 'directory'
    assert meta['source_files'] == [str((hf_dir / weights_name).resolve())]
    # FAST_TEST_ARCH's heads (1, 2, 3) are not one per 64 channels: they come from config.json.
    assert meta['arch'] == FAST_TEST_ARCH and meta['num_classes'] == 7
    assert meta['variant'] is None and 'config.json' in meta['num_heads_source']

    cfg = cvt13_config(arch=meta['arch'], act_cfg=dict(type='GELU'))
    cfg.model.head.num_classes = meta['num_classes']
    model = MODELS.build(cfg.model)
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    images = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model.eval()(images, mode='tensor')
        expected = hf_model(images).logits
    assert expected.std() > 0.1
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


def test_hf_weights_file_alone_converts(tmp_path):
    """A bare pytorch_model.bin (no directory, no config.json) is recognised by its keys."""
    hf_model = random_hf_classifier(FAST_TEST_ARCH, num_labels=3)
    src = tmp_path / 'pytorch_model.bin'
    torch.save(hf_model.state_dict(), src)
    meta = checkpoint.convert_checkpoint(src, tmp_path / 'out.pth')
    assert meta['source_format'] == 'hf' and meta['source_container'] == 'file'
    assert meta['num_classes'] == 3
    # Without config.json the head count falls back to one head per 64 channels.
    assert meta['arch']['num_heads'] == [1, 1, 1]


# ------------------------------------------------------------------------------------------
# (c) the variant comes from the tensors, never the name
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('variant', sorted(OFFICIAL_SPECS))
def test_variant_is_inferred_from_tensor_shapes(variant):
    dims, depths, heads = OFFICIAL_SPECS[variant]
    # Shapes are all that matter: meta tensors cost no memory even for W24.
    state_dict = random_official_state_dict(dims, depths, device='meta')
    source = checkpoint.SourceCheckpoint(Path('CvT-13-224x224-IN-1k.pth'), [], 'file',
                                            state_dict)
    converted = checkpoint.convert(source)
    assert converted.variant == variant
    assert converted.arch == dict(embed_dims=dims, depths=depths, num_heads=heads)


def test_misleading_file_name_does_not_change_the_variant(tmp_path, official_cvt13):
    src = tmp_path / 'CvT-w24-384x384-IN-22k.pth'  # a lie: the tensors are CvT-13's
    torch.save(official_cvt13, src)
    converted = checkpoint.convert(checkpoint.load_source(src))
    assert converted.variant == '13' and converted.arch['depths'] == [1, 2, 10]


# ------------------------------------------------------------------------------------------
# (d) bad input: one line on stderr naming the file, exit status != 0, nothing written
# ------------------------------------------------------------------------------------------

MARKER_NAME = 'payload_ran'


class CreatesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): the payload leaves a file if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def make_text_file(path):
    path.write_text('these are my notes, not a checkpoint\n')


def make_random_bytes(path):
    data = bytearray(torch.randint(0, 256, (4096, ), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    data[0] = 0x13  # neither a pickle opcode nor a zip signature
    path.write_bytes(bytes(data))


def make_empty_file(path):
    path.write_bytes(b'')


def make_truncated_torch_file(path):
    torch.save(random_official_state_dict([16, 32, 48], [1, 1, 1], num_classes=4), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def make_truncated_safetensors(path):
    from safetensors.torch import save_file
    save_file({'cvt.encoder.stages.0.cls_token': torch.zeros(1, 1, 4096)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])


def make_resnet_state_dict(path):
    import torchvision
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)


def make_malicious_torch_file(path):
    torch.save({'state_dict': CreatesMarkerWhenUnpickled(path.parent / MARKER_NAME)}, path)


def make_malicious_raw_pickle(path):
    path.write_bytes(pickle.dumps(CreatesMarkerWhenUnpickled(path.parent / MARKER_NAME)))


def make_empty_hf_directory(path):
    path.mkdir()
    (path / 'config.json').write_text('{"model_type": "cvt"}')


BAD_INPUTS = {
    # case: (builder, file name, words the error line must contain)
    'text file': (make_text_file, 'notes.pth', 'not a checkpoint'),
    'random bytes': (make_random_bytes, 'random.pth', 'not a checkpoint'),
    'empty file': (make_empty_file, 'empty.pth', 'not a checkpoint'),
    'truncated torch file': (make_truncated_torch_file, 'CvT-13-224x224-IN-1k.pth',
                             'truncated or corrupt'),
    'truncated safetensors': (make_truncated_safetensors, 'model.safetensors',
                              'truncated or corrupt'),
    'resnet state dict': (make_resnet_state_dict, 'resnet18.pth', 'not a CvT checkpoint'),
    'malicious torch file': (make_malicious_torch_file, 'CvT-13-224x224-IN-1k.pth',
                             'refusing to unpickle'),
    'malicious raw pickle': (make_malicious_raw_pickle, 'model.pkl', 'refusing to unpickle'),
    'hf directory without weights': (make_empty_hf_directory, 'cvt-13', 'holds no weights'),
}
# Run through a real subprocess: the exit status and stderr of the command itself (the other
# cases call the same entry point in-process, which is faster).
SUBPROCESS_CASES = {'malicious torch file'}


def check_failure(returncode, stderr, src, dst, old_dst_bytes, expected_words):
    assert returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert str(src) in lines[0] and expected_words in lines[0], lines[0]
    assert not (src.parent / MARKER_NAME).exists(), 'the pickle payload ran'
    assert dst.read_bytes() == old_dst_bytes  # an existing DST is left alone
    assert [path.name for path in dst.parent.iterdir()] == [dst.name]  # no temp files left


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line_naming_the_file(tmp_path, capsys, case):
    builder, name, expected_words = BAD_INPUTS[case]
    src_dir = tmp_path / 'src'
    src_dir.mkdir()
    src = src_dir / name
    builder(src)
    dst = tmp_path / 'out' / 'cvt13_in1k.pth'
    dst.parent.mkdir()
    dst.write_bytes(b'previous conversion')

    if case in SUBPROCESS_CASES:
        result = run_converter(src, dst)
        returncode, stderr = result.returncode, result.stderr
    else:
        returncode = convert_tool.main([str(src), str(dst)])
        stderr = capsys.readouterr().err
    check_failure(returncode, stderr, src, dst, b'previous conversion', expected_words)


def test_weights_that_do_not_fit_a_cvt_are_rejected(tmp_path, capsys):
    """Right names, wrong shapes (a tampered or mixed-up file) fail verification, not later."""
    state_dict = random_official_state_dict([16, 32, 48], [1, 1, 1], num_classes=4)
    state_dict['stage1.blocks.0.mlp.fc1.weight'] = torch.zeros(100, 32)
    src = tmp_path / 'tampered.pth'
    torch.save(state_dict, src)
    dst = tmp_path / 'out.pth'
    assert convert_tool.main([str(src), str(dst)]) != 0
    error = capsys.readouterr().err.strip()
    assert error.count('\n') == 0 and str(src) in error
    assert 'do not fit' in error and 'stages.1.blocks.0.mlp.fc1.weight' in error
    assert not dst.exists()


def test_failed_save_leaves_no_partial_destination(tmp_path, monkeypatch):
    src = tmp_path / 'CvT-13-224x224-IN-1k.pth'
    torch.save(random_official_state_dict([16, 32, 48], [1, 1, 1], num_classes=4), src)
    dst = tmp_path / 'cvt13_in1k.pth'
    dst.write_bytes(b'previous conversion')

    def fail_midway(obj, path):
        Path(path).write_bytes(b'half a checkpoint')
        raise OSError('disk full')

    monkeypatch.setattr(checkpoint.conversion.torch, 'save', fail_midway)
    with pytest.raises(checkpoint.CheckpointError, match='disk full'):
        checkpoint.convert_checkpoint(src, dst)
    assert dst.read_bytes() == b'previous conversion'
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([src.name, dst.name])


def test_converted_checkpoint_starts_a_dense_backbone(cli_converted_cvt13, official_cvt13):
    """The output feeds detection / segmentation: init_cfg Pretrained with prefix 'backbone.'."""
    _, dst, _ = cli_converted_cvt13
    backbone = MODELS.build(dict(
        type='CvT', arch='13', out_type='featmap', out_indices=(0, 1, 2),
        init_cfg=dict(type='Pretrained', checkpoint=str(dst), prefix='backbone.')))
    backbone.init_weights()
    torch.testing.assert_close(backbone.stages[2].blocks[9].attn.conv_proj_v.bn.running_var,
                               official_cvt13['stage2.blocks.9.attn.conv_proj_v.bn.running_var'])
    torch.testing.assert_close(backbone.stages[0].patch_embed.proj.weight,
                               official_cvt13['stage0.patch_embed.proj.weight'])


@pytest.mark.parametrize('prefix', ['', 'cvt.'], ids=['CvtModel', 'cvt-prefixed'])
def test_headless_hf_model_converts_and_starts_a_dense_backbone(tmp_path, capsys, prefix):
    """AutoModel's CvtModel (``encoder.*``, no final LayerNorm, no classifier), also with the
    classifier's ``cvt.`` prefix: a backbone-only checkpoint for the Mask R-CNN backbone."""
    import transformers
    from mmdet.registry import MODELS as DET_MODELS
    from safetensors.torch import load_file, save_file

    from cvt_mm.checkpoint.key_mapping import convert_state_dict
    from cvt_mm.testing import randomize_norms

    hf_config = transformers.CvtConfig(embed_dim=FAST_TEST_ARCH['embed_dims'],
                                       depth=FAST_TEST_ARCH['depths'],
                                       num_heads=FAST_TEST_ARCH['num_heads'])
    hf_model = randomize_norms(transformers.CvtModel(hf_config, add_pooling_layer=False))
    hf_dir = tmp_path / 'cvt-headless'
    hf_model.save_pretrained(hf_dir)
    weights = hf_dir / 'model.safetensors'
    saved = load_file(weights)
    assert all(key.startswith('encoder.stages.') for key in saved)  # what CvtModel writes
    if prefix:
        save_file({prefix + key: value for key, value in saved.items()}, weights,
                  metadata={'format': 'pt'})
    dst = tmp_path / 'backbone.pth'

    assert convert_tool.main([str(hf_dir), str(dst)]) == 0
    output = capsys.readouterr()
    assert output.err == ''
    assert 'no classifier head' in output.out and 'backbone only' in output.out

    meta = load_converted(dst)['meta']
    assert meta['source_format'] == 'hf' and meta['classifier'] is False
    assert meta['num_classes'] is None and meta['arch'] == FAST_TEST_ARCH

    cfg = Config.fromfile(str(REPO / 'configs' / 'cvt13_maskrcnn_coco.py'))
    backbone_cfg = cfg.model.backbone
    backbone_cfg.update(arch=meta['arch'],
                        init_cfg=dict(backbone_cfg.init_cfg, checkpoint=str(dst)))
    backbone = DET_MODELS.build(backbone_cfg)
    backbone.init_weights()
    loaded = backbone.state_dict()
    expected = {key[len('backbone.'):]: value
                for key, value in convert_state_dict(hf_model.state_dict()).items()}
    dense_only = {f'out_norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}
    assert set(loaded) == set(expected) | dense_only
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name

    # The converted weights compute what CvtModel computes: with its exact GELU and no output
    # norms, the backbone's stage maps are CvtModel's hidden states.
    gelu_cfg = copy.deepcopy(backbone_cfg)
    gelu_cfg.update(act_cfg=dict(type='GELU'), out_norm=False, out_indices=(0, 1, 2))
    gelu_backbone = DET_MODELS.build(gelu_cfg)
    gelu_backbone.init_weights()
    images = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        hidden_states = hf_model.eval()(images, output_hidden_states=True).hidden_states
        maps = gelu_backbone.eval()(images)
    assert len(hidden_states) == len(maps) == 3
    for expected_map, actual_map in zip(hidden_states, maps):
        assert expected_map.abs().max() > 0.1
        torch.testing.assert_close(actual_map, expected_map, rtol=1e-4, atol=1e-4)
