"""Building an mmengine Runner for an mmpretrain, mmdet or mmseg config."""
import importlib

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .config import task_scope
from .distributed import setup_cpu_distributed


def register_task_modules(scope: str) -> None:
    """Register the task library's modules and make its scope the current default scope."""
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=True)


def build_runner(cfg: Config) -> Runner:
    """Register the config's task modules, prepare CPU DDP if needed and build the Runner."""
    register_task_modules(task_scope(cfg))
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
