"""shrink_config: a real config re-rooted, its image sizes scaled, its schedule shortened."""
from helpers import CONFIG_DIR, load_repo_config
from mmengine.config import Config

from cvt_mm.toy.shrinking import set_epochs, shrink_config

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def pipeline_step(cfg, loader, kind):
    return next(step for step in cfg[loader].dataset.pipeline if step.type == kind)


def test_a_detection_config_is_rerooted_scaled_and_shortened():
    cfg = load_repo_config('cvt13_maskrcnn_coco.py')
    assert pipeline_step(cfg, 'train_dataloader', 'Resize').scale == (1333, 800)
    warmup_end = next(s for s in cfg.param_scheduler if s.type == 'LinearLR').end
    shrink_config(cfg, data_root='toy/coco/', size_factor=0.1, length=2, num_workers=0,
                  run_name='toy')

    assert [cfg[loader].dataset.data_root for loader in LOADERS] == ['toy/coco/'] * 3
    # The COCO metric reads its annotations itself: they move with the data.
    assert cfg.val_evaluator.ann_file == 'toy/coco/annotations/instances_val2017.json'
    assert cfg.test_evaluator.ann_file == 'toy/coco/annotations/instances_val2017.json'
    assert pipeline_step(cfg, 'train_dataloader', 'Resize').scale == (133, 80)
    assert pipeline_step(cfg, 'val_dataloader', 'Resize').scale == (133, 80)
    assert all(cfg[loader].num_workers == 0 and not cfg[loader].persistent_workers
               for loader in LOADERS)
    # The 12-epoch step schedule, shortened to 2 epochs with its shape.
    assert cfg.train_cfg.max_epochs == 2 and cfg.train_cfg.val_interval == 2
    step = next(s for s in cfg.param_scheduler if s.type == 'MultiStepLR')
    assert step.end == 2 and step.milestones == [1]
    warmup = next(s for s in cfg.param_scheduler if s.type == 'LinearLR')
    assert not warmup.by_epoch and warmup.end == warmup_end  # iterations: left as they are
    assert cfg.experiment_name.startswith('toy_')
    assert cfg.visualizer.name == cfg.experiment_name


def test_a_segmentation_config_keeps_its_crop_and_preprocessor_in_step():
    cfg = load_repo_config('cvt13_upernet_ade20k.py')
    crop = pipeline_step(cfg, 'train_dataloader', 'RandomCrop').crop_size
    shrink_config(cfg, data_root='toy/ade', size_factor=0.125, length=1)

    assert cfg.train_dataloader.dataset.data_root == 'toy/ade'
    assert pipeline_step(cfg, 'train_dataloader', 'RandomCrop').crop_size == tuple(
        round(side / 8) for side in crop)
    assert cfg.model.data_preprocessor.size == (64, 64)  # pads batches to the scaled crop
    assert cfg.train_cfg.max_iters == 1 and cfg.train_cfg.val_interval == 1


def test_mask2formers_fixed_size_batch_padding_shrinks_with_its_crops():
    # Large-scale jitter crops to 1024x1024 and pads every batch to that size: both shrink.
    cfg = load_repo_config('cvt13_mask2former_coco.py')
    assert cfg.model.data_preprocessor.batch_augments[0].size == (1024, 1024)
    shrink_config(cfg, size_factor=0.125)
    assert pipeline_step(cfg, 'train_dataloader', 'RandomCrop').crop_size == (128, 128)
    assert cfg.model.data_preprocessor.batch_augments[0].size == (128, 128)


def test_set_epochs_keeps_the_schedule_shape():
    cfg = Config.fromfile(str(CONFIG_DIR / 'toy/cvt_demo_maskrcnn_toy.py'))
    set_epochs(cfg, 1)
    assert cfg.train_cfg.max_epochs == 1
    assert cfg.default_hooks.checkpoint.interval == 1
    assert all(s.get('end', 1) <= 1 for s in cfg.param_scheduler if s.get('by_epoch', True))
