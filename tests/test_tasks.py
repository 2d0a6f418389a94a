"""The task table (cvt_mm.tasks) against the libraries it names: their registries and default
scopes, inferencers, model initialisers, annotation loaders and visualization hooks; every
shipped config's model type in the registry of the task its config belongs to; one-line
errors for a config or a scope of no task."""
import inspect
from pathlib import Path

import pytest
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.registry.utils import init_default_scope

from cvt_mm.datasets.checks import CHECKS
from cvt_mm.engine import enable_visualization, register_task_modules
from cvt_mm.registry import TASK_MODEL_REGISTRIES
from cvt_mm.tasks import (
    SEGMENTATION,
    TASKS,
    task_of_config,
    task_of_module,
    task_of_scope,
)

SHIPPED_CONFIGS = sorted(path for path in CONFIG_DIR.rglob('*.py')
                         if '_base_' not in path.parts)
REGISTRY_NAMES = ('MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS', 'VISUALIZERS')


@pytest.fixture(scope='module', autouse=True)
def _all_libraries_registered():
    # The default scope is process-wide: the next test module of this worker gets back the
    # one it had (a scope without CvT, such as 'mmengine''s root, would break its builds).
    previous = DefaultScope.get_current_instance()
    for task in TASKS:
        task.register_modules()
    yield
    if previous is not None:
        init_default_scope(previous.scope_name)


@pytest.mark.parametrize('task', TASKS, ids=lambda task: task.scope)
def test_registries_and_default_scope_are_the_librarys(task):
    for name in REGISTRY_NAMES:
        assert task.registry(name).scope == task.scope, name
    assert 'CvT' in task.registry('MODELS').module_dict  # cvt_mm registered its backbone there
    task.register_modules()
    assert DefaultScope.get_current_instance().scope_name == task.scope
    assert task_of_scope(task.scope) is task


def test_backbone_registries_are_the_tasks():
    assert TASK_MODEL_REGISTRIES == tuple(task.registry('MODELS') for task in TASKS)


@pytest.mark.parametrize('task', TASKS, ids=lambda task: task.scope)
def test_inferencer_and_initialiser_are_the_librarys(task):
    inferencer = task.inferencer_class()
    assert all(callable(getattr(inferencer, method, None))  # what cvt_mm.apis.inference calls
               for method in ('__call__', 'visualize', 'postprocess'))
    assert inferencer.__module__.split('.')[0] == task.scope
    assert task.weights_keyword in inspect.signature(inferencer).parameters
    init_model = task.init_model_function()
    assert init_model.__module__.split('.')[0] == task.scope
    assert list(inspect.signature(init_model).parameters)[:2] == ['config', 'checkpoint']


@pytest.mark.parametrize('task', TASKS, ids=lambda task: task.scope)
def test_annotation_loader_default_is_the_librarys(task):
    load_annotations = task.registry('TRANSFORMS').get('LoadAnnotations')
    assert load_annotations().with_seg == task.annotations_load_segmentation


@pytest.mark.parametrize('task', TASKS, ids=lambda task: task.scope)
def test_drawing_keys_are_arguments_of_the_librarys_hook_and_visualizer(task, tmp_path):
    # mmseg's default hooks are in its schedules.
    bases = ['_base_/default_runtime.py'] + (['_base_/schedules/schedule_160k.py']
                                              if task is SEGMENTATION else [])
    config = tmp_path / 'runtime.py'
    config.write_text(f'_base_ = {[f"{task.scope}::{base}" for base in bases]!r}\n')
    cfg = Config.fromfile(str(config))
    enable_visualization(cfg, str(tmp_path))
    hook, visualizer = cfg.default_hooks.visualization, cfg.visualizer
    assert str(tmp_path) in (hook.get(key) for key in hook) or \
        visualizer.get('save_dir') == str(tmp_path)
    for built, registry in ((hook, 'HOOKS'), (visualizer, 'VISUALIZERS')):
        arguments = inspect.signature(task.registry(registry).get(built.type)).parameters
        assert set(built) - {'type', '_scope_'} <= set(arguments), built.type


def test_each_task_has_a_data_set_check():
    assert set(CHECKS) == set(TASKS)


@pytest.mark.parametrize('config', SHIPPED_CONFIGS,
                         ids=lambda path: str(path.relative_to(CONFIG_DIR)))
def test_shipped_config_model_belongs_to_its_task(config):
    cfg = Config.fromfile(str(config))
    task = task_of_config(cfg)
    model_type = cfg.model.type
    scope, _, name = model_type.rpartition('.')
    assert scope in ('', task.scope), model_type
    assert name in task.registry('MODELS').module_dict, f'{model_type} is not a {task.scope} model'
    assert task_of_module(task.registry('MODELS').get(name).__module__) is task


@pytest.mark.parametrize('default_scope', [None, 'mmocr'])
def test_config_of_no_task_named_in_one_line(tmp_path, default_scope):
    config = tmp_path / 'ocr_config.py'
    config.write_text(f"default_scope = {default_scope!r}\nmodel = dict(type='DBNet')\n")
    with pytest.raises(ValueError) as error:
        task_of_config(Config.fromfile(str(config)))
    message = str(error.value)
    assert str(config) in message and repr(default_scope) in message and '\n' not in message


def test_unknown_scope_named_in_one_line():
    for ask in (task_of_scope, register_task_modules):
        with pytest.raises(ValueError, match=r"^unknown task library 'mmocr': cvt_mm runs on "
                           r'mmpretrain, mmdet, mmseg$'):
            ask('mmocr')


def test_module_of_a_library_names_its_task():
    dataset = SEGMENTATION.registry('DATASETS').get('ADE20KDataset')
    assert task_of_module(dataset.__module__) is SEGMENTATION
    assert task_of_module('mmengine.dataset.base_dataset') is None
    assert task_of_module(Path.__module__) is None
