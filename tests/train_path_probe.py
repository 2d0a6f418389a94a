"""A hook that writes down what a training process built (imported by the training processes
of test_resume.py through the config's custom_imports)."""
import json

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RecordTrainPathHook(Hook):
    """Before training, writes to ``out_file`` (JSON) the class names of the train loop, the
    train dataloader's batch sampler and data set, and of every hook."""

    def __init__(self, out_file: str):
        self.out_file = out_file

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        path = dict(loop=type(runner.train_loop).__name__,
                    batch_sampler=type(loader.batch_sampler).__name__,
                    dataset=type(loader.dataset).__name__,
                    hooks=[type(hook).__name__ for hook in runner.hooks])
        with open(self.out_file, 'w') as stream:
            json.dump(path, stream)
