"""The three task libraries cvt_mm runs on, and everything cvt_mm looks up about each.

A config belongs to the library named by its ``default_scope`` ('mmpretrain', 'mmdet' or
'mmseg'), as the libraries' own tools read it. Each :class:`Task` records the library's scope,
where its registries, module registration, inferencer and model initialiser are, and the
library conventions cvt_mm's tools rely on. The rest of cvt_mm asks this table
(:func:`task_of_config`, :func:`task_of_scope`) instead of comparing scope names.

Only ``importlib`` is imported here: a library's modules load when a task first asks for them,
so naming a task costs nothing.
"""
import importlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple


def load_object(path: str) -> Any:
    """The object at ``'package.module:name'``, importing the module."""
    module, name = path.split(':')
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, eq=False)  # each task is one object: compared and hashed by identity
class Task:
    """One task library, as cvt_mm uses it.

    Args:
        name (str): The task, 'classification', 'detection' or 'segmentation'.
        scope (str): The library's package, which is also its mmengine default scope.
        inferencer (str): ``'module:Class'`` of the library's image inferencer.
        weights_keyword (str): The inferencer's argument for a checkpoint.
        no_weights (Any): What that argument takes for "no checkpoint" (mmpretrain's default,
            True, would download the model's own weights).
        init_model (str): ``'module:function'`` that builds a config's model with a
            checkpoint, ``init_model(cfg, checkpoint, device=...)``.
        annotations_load_segmentation (bool): Whether the library's ``LoadAnnotations`` loads
            segmentation maps unless told ``with_seg=False``.
        draw_test_images (Mapping): What the visualization hook of ``default_hooks`` is updated
            with to draw every test image.
        drawings_dir (str): The config key (dotted) that takes the folder of the drawings.
    """
    name: str
    scope: str
    inferencer: str
    weights_keyword: str
    no_weights: Any
    init_model: str
    annotations_load_segmentation: bool
    draw_test_images: Mapping[str, Any]
    drawings_dir: str

    def registry(self, name: str = 'MODELS'):
        """The library's registry ``name`` ('MODELS', 'DATASETS', 'METRICS', ...)."""
        return getattr(importlib.import_module(f'{self.scope}.registry'), name)

    def register_modules(self) -> None:
        """Register the library's modules and make its scope the current default scope."""
        importlib.import_module(f'{self.scope}.utils').register_all_modules(
            init_default_scope=True)

    def inferencer_class(self):
        return load_object(self.inferencer)

    def init_model_function(self):
        return load_object(self.init_model)

    def inferencer_weights(self, checkpoint: Optional[str]) -> dict:
        """The inferencer's keyword argument that loads ``checkpoint`` (None or '': none)."""
        return {self.weights_keyword: checkpoint or self.no_weights}


CLASSIFICATION = Task(
    name='classification', scope='mmpretrain',
    inferencer='mmpretrain.apis:ImageClassificationInferencer',
    weights_keyword='pretrained', no_weights=False,
    init_model='mmpretrain.apis:init_model',
    annotations_load_segmentation=False,
    # The hook is off by default and draws one image in 5000 when on.
    draw_test_images=MappingProxyType(dict(enable=True, interval=1)),
    drawings_dir='default_hooks.visualization.out_dir')

DETECTION = Task(
    name='detection', scope='mmdet',
    inferencer='mmdet.apis:DetInferencer',
    weights_keyword='weights', no_weights=None,
    init_model='mmdet.apis:init_detector',
    annotations_load_segmentation=False,
    # Relative folders end up under <work_dir>/<timestamp>/.
    draw_test_images=MappingProxyType(dict(draw=True)),
    drawings_dir='default_hooks.visualization.test_out_dir')

SEGMENTATION = Task(
    name='segmentation', scope='mmseg',
    inferencer='mmseg.apis:MMSegInferencer',
    weights_keyword='weights', no_weights=None,
    init_model='mmseg.apis:init_model',
    annotations_load_segmentation=True,
    # The hook draws one image in 50 by default, through the visualizer, which saves under
    # its save_dir (vis_data/vis_image/).
    draw_test_images=MappingProxyType(dict(draw=True, interval=1)),
    drawings_dir='visualizer.save_dir')

TASKS: Tuple[Task, ...] = (CLASSIFICATION, DETECTION, SEGMENTATION)
TASK_SCOPES: Tuple[str, ...] = tuple(task.scope for task in TASKS)
_BY_SCOPE = {task.scope: task for task in TASKS}


def task_of_scope(scope: str) -> Task:
    """The task of a library scope; ValueError naming it for another."""
    task = _BY_SCOPE.get(scope)
    if task is None:
        raise ValueError(f'unknown task library {scope!r}: cvt_mm runs on '
                         f'{", ".join(TASK_SCOPES)}')
    return task


def task_of_config(cfg) -> Task:
    """The task a config belongs to, from its ``default_scope``; ValueError naming the config
    file for a config that belongs to none."""
    scope = cfg.get('default_scope')
    if scope not in _BY_SCOPE:
        where = getattr(cfg, 'filename', None) or 'config'
        raise ValueError(f'{where}: default_scope is {scope!r}; expected one of '
                         f'{", ".join(TASK_SCOPES)} (inherit the default_runtime.py of '
                         'mmpretrain, mmdet or mmseg)')
    return _BY_SCOPE[scope]


def task_of_module(module_name: str) -> Optional[Task]:
    """The task whose library defines the module ``module_name`` (an object's
    ``__module__``), or None for a module of none of them."""
    return _BY_SCOPE.get(module_name.split('.')[0])
