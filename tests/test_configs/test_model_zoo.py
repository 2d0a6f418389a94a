"""The model zoo: model-index.yml and its metafiles, and their registration in mmpretrain.

The metafiles parse with modelindex (the parser mmpretrain's ModelHub uses) and name every
config; each named config builds its model, on the meta device (shapes only, so even CvT-W24
takes no memory and nothing is initialised or downloaded). ``import cvt_mm`` hands exactly the
classifiers to mmpretrain's ``list_models`` / ``get_model``. Here the configs are the
checkout's; tests/test_packaging.py builds a classifier from a wheel's.
"""
import functools
from pathlib import Path

import pytest
import torch
import yaml
from helpers import build_model, load_repo_config
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain import get_model, list_models
from mmpretrain.apis import ModelHub
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from modelindex.load_model_index import load

from cvt_mm.apis import (
    classification_metafile,
    config_dir,
    dense_metafile,
    register_model_index,
)
from cvt_mm.models import CvT

# The metafiles' Config and README paths are relative to this (mim's convention).
ZOO_ROOT = config_dir().parent
MODEL_INDEX = ZOO_ROOT / 'model-index.yml'
# Model type per dense config (mmdet's and mmseg's class names).
# The detector or segmentor type each dense config name announces.
DENSE_MODEL_TYPES = {'cascade-mask-rcnn': 'CascadeRCNN', 'maskrcnn': 'MaskRCNN',
                     'retinanet': 'RetinaNet', 'upernet': 'EncoderDecoder',
                     'mask2former_coco': 'Mask2Former', 'mask2former_ade20k': 'EncoderDecoder',
                     'dino': 'DINO'}


def read_models(metafile: Path) -> list:
    """The ``Models`` entries of a metafile, as plain dicts (read with PyYAML, independently of
    modelindex)."""
    return yaml.safe_load(metafile.read_text())['Models']


CLASSIFIERS = {model['Name']: model for model in read_models(classification_metafile())}
DENSE_MODELS = {model['Name']: model for model in read_models(dense_metafile())}


@functools.lru_cache(maxsize=None)
def parsed_config(path: str) -> Config:
    """Parsing resolves mmpretrain::/mmdet::/mmseg:: bases: slow, so once per config."""
    return Config.fromfile(ZOO_ROOT / path)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# --------------------------------------------------------------------------------- metafiles
def test_model_index_imports_both_metafiles_and_passes_modelindex_check():
    index = load(str(MODEL_INDEX))
    index.build_models_with_collections()
    names = [model.name for model in index.models]
    assert names == list(CLASSIFIERS) + list(DENSE_MODELS)
    assert len(set(names)) == len(names)
    # modelindex resolves README against the metafile's directory, OpenMMLab (mmpretrain's own
    # metafiles too) against the repository root: only that check is replaced, by the one below.
    errors = [error for error in index.check(silent=True)
              if 'Path to README file' not in error]
    assert errors == []
    for collection in index.collections:
        assert (ZOO_ROOT / collection.readme).is_file()
    # Every model inherits its collection's Paper and Code (no "Invalid collection name").
    for model in index.models:
        assert model.full_model.paper['URL'] == 'https://arxiv.org/abs/2103.15808'
        assert model.full_model.code['URL'] == 'https://github.com/microsoft/CvT'


def test_every_classification_config_is_in_the_metafile():
    configs = sorted(f'configs/{path.name}' for path in config_dir().glob('cvt*_in*.py'))
    assert configs  # the glob found the configs at all
    assert sorted(model['Config'] for model in CLASSIFIERS.values()) == configs


def test_every_dense_config_is_in_the_dense_metafile():
    configs = sorted(f'configs/{path.name}' for kind in DENSE_MODEL_TYPES
                     for path in config_dir().glob(f'cvt*_{kind}*.py'))
    assert configs
    assert sorted(model['Config'] for model in DENSE_MODELS.values()) == configs


@pytest.mark.parametrize('name', CLASSIFIERS)
def test_classifier_entry_follows_the_schema(name):
    model = CLASSIFIERS[name]
    assert model['In Collection'] == 'CvT'
    assert set(model['Metadata']) == {'Training Data', 'FLOPs', 'Parameters'}
    (result,) = model['Results']
    assert result['Task'] == 'Image Classification'
    assert result['Dataset'] == 'ImageNet-1k'
    assert 70 < result['Metrics']['Top 1 Accuracy'] < 90
    # The converted file is named after its config (docs/checkpoints.md).
    assert model['Weights'] == f'checkpoints/{Path(model["Config"]).stem}.pth'
    assert model['Converted From']['Code'] == 'https://github.com/microsoft/CvT'
    assert model['Converted From']['Weights'].startswith('https://')


@pytest.mark.parametrize('name', DENSE_MODELS)
def test_dense_entry_has_no_results_nor_weights(name):
    # Nothing has been measured: no published numbers, no trained weights.
    model = DENSE_MODELS[name]
    assert 'Results' not in model and 'Weights' not in model
    assert model['Metadata']['Pretrained'] in CLASSIFIERS


def test_readme_names_every_model_and_config():
    readme = (config_dir() / 'README.md').read_text()
    for name, model in {**CLASSIFIERS, **DENSE_MODELS}.items():
        assert Path(model['Config']).name in readme
        if name in CLASSIFIERS:
            assert f'`{name}`' in readme
    for path in sorted((config_dir() / 'transfer').glob('*.py')):
        assert f'configs/transfer/{path.name}' in readme


# ------------------------------------------------------------------------ configs build models
@pytest.mark.parametrize('name', CLASSIFIERS)
def test_classification_config_builds_with_the_metafile_parameter_count(name):
    model_cfg = parsed_config(CLASSIFIERS[name]['Config']).model
    # The scope explicitly: the dense tests leave mmdet's or mmseg's as the default.
    with torch.device('meta'), DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MMPRETRAIN_MODELS.build(model_cfg)
    assert isinstance(model, ImageClassifier) and isinstance(model.backbone, CvT)
    assert parameter_count(model) == pytest.approx(
        CLASSIFIERS[name]['Metadata']['Parameters'], rel=0.005)


@pytest.mark.parametrize('name', DENSE_MODELS)
def test_dense_config_builds_in_its_task_library(name):
    config = DENSE_MODELS[name]['Config']
    cfg = load_repo_config(Path(config).name)
    cfg.model.backbone.pop('init_cfg')  # the converted checkpoint: not loaded, not needed
    with torch.device('meta'):
        model = build_model(cfg)
    kind = next(kind for kind in DENSE_MODEL_TYPES if f'_{kind}' in config)
    assert type(model).__name__ == DENSE_MODEL_TYPES[kind]
    assert isinstance(model.backbone, CvT)
    assert model.backbone.arch_settings == CvT.arch_zoo[cfg.model.backbone.arch]


# ---------------------------------------------------------------------- mmpretrain's ModelHub
def test_list_models_gives_exactly_the_classifiers():
    assert list_models('cvt*') == sorted(CLASSIFIERS)
    assert not set(list_models()) & set(DENSE_MODELS)


@pytest.mark.parametrize('name', CLASSIFIERS)
def test_get_model_builds_the_classifier_of_the_metafile_config(name):
    with torch.device('meta'):
        model = get_model(name)
    assert isinstance(model, ImageClassifier) and isinstance(model.backbone, CvT)
    assert Path(model._config.filename) == ZOO_ROOT / CLASSIFIERS[name]['Config']
    assert parameter_count(model) == CLASSIFIERS[name]['Metadata']['Parameters']


def test_register_model_index_again_changes_nothing():
    before = dict(ModelHub._models_dict)
    assert register_model_index() == list(CLASSIFIERS)
    assert ModelHub._models_dict == before


def test_names_taken_by_another_index_are_left_alone(monkeypatch):
    foreign = object()
    monkeypatch.setattr(ModelHub, '_models_dict', {next(iter(CLASSIFIERS)): foreign})
    with pytest.warns(UserWarning, match='already has models named'):
        assert register_model_index() == []
    assert ModelHub._models_dict == {next(iter(CLASSIFIERS)): foreign}


def test_get_model_pretrained_loads_the_converted_checkpoint(tmp_path, monkeypatch):
    """``Weights`` is the converter's output path, relative to the working directory."""
    name = 'cvt-13_3rdparty_in1k'
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match='checkpoints/cvt13_in1k.pth'):
        get_model(name, pretrained=True)
    reference = get_model(name)
    (tmp_path / 'checkpoints').mkdir()
    torch.save({'state_dict': reference.state_dict(), 'meta': {}},
               tmp_path / CLASSIFIERS[name]['Weights'])
    loaded = get_model(name, pretrained=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
