"""The model zoo: cvt_mm's configs, the classifier they define, and their model index.

The configs live in the repository's ``configs/`` (an editable install) or, in an installed
package, in ``cvt_mm/.mim/configs`` (as mim lays out OpenMMLab packages). Their metafiles
(OpenMMLab's model-index schema) list the classifiers (``configs/metafile.yml``, which
``import cvt_mm`` registers into mmpretrain's ``ModelHub``) and the detection and segmentation
configs (``configs/metafile_dense.yml``, for mim).
"""
import warnings
from pathlib import Path
from typing import List, Union

from mmengine.config import Config, ConfigDict
from mmpretrain.apis import ModelHub
from modelindex.load_model_index import load  # mmpretrain's dependency, its ModelHub's parser

from ..tasks import CLASSIFICATION

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The one definition of the CvT image classifier; CvT-21/W24 inherit it.
CLASSIFIER_BASE_CONFIG = '_base_/models/cvt13.py'
# The metafiles, in config_dir(). Only the classifiers go to mmpretrain's ModelHub: its
# get_model builds every model in mmpretrain's scope, where a Mask R-CNN or UperNet is unknown.
CLASSIFICATION_METAFILE = 'metafile.yml'
DENSE_METAFILE = 'metafile_dense.yml'


def config_dir() -> Path:
    """The directory holding cvt_mm's configs (and ``model-index.yml`` beside it)."""
    # A checkout (editable install) first, so that edited configs are the ones read.
    checkout = PACKAGE_ROOT.parent
    if (checkout / 'setup.py').is_file() and (checkout / 'configs').is_dir():
        return checkout / 'configs'
    if (PACKAGE_ROOT / '.mim' / 'configs').is_dir():
        return PACKAGE_ROOT / '.mim' / 'configs'
    raise FileNotFoundError(f'cvt_mm configs not found in {PACKAGE_ROOT / ".mim"} nor in '
                            f'{PACKAGE_ROOT.parent}; reinstall cvt_mm')


def classifier_cfg(arch: Union[str, dict] = '13', num_classes: int = 1000,
                   **backbone_kwargs) -> ConfigDict:
    """The mmpretrain ``ImageClassifier`` of ``configs/_base_/models/cvt13.py`` for any arch.

    The last stage's cls token, after the final LayerNorm, into a linear head (the official
    classifier's layout). The training-only batch augments (Mixup/CutMix) are dropped, so the
    result builds and runs on its own, whatever the caller's default scope.

    Args:
        arch (str | dict): '13', '21', 'w24' or a dict as ``CvT``'s ``arch``. Defaults to '13'.
        num_classes (int): Size of the linear head. Defaults to 1000.
        **backbone_kwargs: Further ``CvT`` arguments, e.g. ``act_cfg=dict(type='GELU')``.
    """
    from cvt_mm.models import CvT

    model = Config.fromfile(config_dir() / CLASSIFIER_BASE_CONFIG).model
    arch_settings = CvT.parse_arch(arch)
    model.backbone.update(arch=arch, **backbone_kwargs)
    model.head.update(num_classes=num_classes, in_channels=arch_settings['embed_dims'][-1])
    model.train_cfg = None
    model._scope_ = CLASSIFICATION.scope
    return model


def classification_metafile() -> Path:
    """The metafile of the ImageNet classifiers, ``configs/metafile.yml``."""
    return config_dir() / CLASSIFICATION_METAFILE


def dense_metafile() -> Path:
    """The metafile of the Mask R-CNN and UperNet configs, ``configs/metafile_dense.yml``."""
    return config_dir() / DENSE_METAFILE


def register_model_index() -> List[str]:
    """Register cvt_mm's ImageNet classifiers in mmpretrain's ``ModelHub``.

    Afterwards ``mmpretrain.list_models('cvt*')`` lists them and ``mmpretrain.get_model(name)``
    builds them. ``import cvt_mm`` calls this. Only ``configs/metafile.yml`` is registered, not
    the dense metafile (see ``DENSE_METAFILE``).

    The metafile's ``Config`` paths are relative to the repository root (mim's convention), so the
    ``config_prefix`` handed to ``ModelHub.register_model_index`` is the directory above
    ``config_dir()``: the repository, or ``cvt_mm/.mim`` in an installed package.

    Calling it again does nothing: ``ModelHub`` raises on a name it holds already, so the names
    are checked first. If another model index holds some of them, cvt_mm's models are left out
    with a warning rather than failing ``import cvt_mm``.

    Returns:
        list[str]: The (lower-case, as ``ModelHub`` keys them) model names of the metafile, or
        an empty list when they were left out.
    """
    metafile = classification_metafile()
    names = [model.name.lower() for model in load(str(metafile)).models]
    taken = [name for name in names if ModelHub.has(name)]
    if len(taken) == len(names):
        return names
    if taken:
        warnings.warn(f'{metafile}: mmpretrain already has models named {taken} from another '
                      'model index; cvt_mm\'s classifiers are not registered', stacklevel=2)
        return []
    ModelHub.register_model_index(metafile, config_prefix=config_dir().parent)
    return names
