"""The "your own dataset" recipes of docs/dense_prediction.md (configs/examples/), run as
written: data made in each recipe's layout with its classes (from the toy shape sets) under the
recipe's own relative paths, tools/check_dataset.py on it, then one training iteration,
validation and test of the recipe with a tiny CvT (tests/helpers.py toy_config with the
config's own data kept)."""
import json
import shutil
from pathlib import Path

import check_dataset
import numpy as np
import pytest
import torch
from helpers import CONFIG_DIR, TOY_IMAGE_SIZE, LogCapture, load_repo_config, toy_config
from mmengine.runner import Runner
from PIL import Image

from cvt_mm.toy import shapes

DETECTION = 'examples/cvt13_maskrcnn_own-coco-5cls.py'
SEGMENTATION = 'examples/cvt13_upernet_own-seg-6cls.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The toy split each of the recipe's splits is made from (two images each).
SOURCE_SPLIT = {'train_dataloader': 'train', 'val_dataloader': 'val', 'test_dataloader': 'val'}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_own_coco(cfg, staging: Path) -> None:
    """The toy COCO set, its categories renamed to the recipe's classes (ids 1..5 in order),
    written where the recipe's data sets look (relative to the working directory)."""
    shapes.make_coco(staging, num_train=2, num_val=2, image_size=TOY_IMAGE_SIZE, seed=0)
    classes = cfg.train_dataloader.dataset.metainfo['classes']
    assert len(classes) == len(shapes.SHAPE_CLASSES)
    for loader in LOADERS:
        dataset, split = cfg[loader].dataset, SOURCE_SPLIT[loader]
        data = json.loads((staging / 'annotations' / f'instances_{split}2017.json').read_text())
        for category in data['categories']:
            category['name'] = classes[category['id'] - 1]
        data['info']['description'] = loader  # which file an evaluator read
        ann_file = Path(dataset.data_root) / dataset.ann_file
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(data))
        shutil.copytree(staging / f'{split}2017', Path(dataset.data_root) / dataset.data_prefix.img)


def make_own_segmentation(cfg, staging: Path) -> None:
    """The toy ADE20K set with its label maps as class indices (background 0, the shapes
    1..5: the on-disk value minus one), under the recipe's img_dir / ann_dir."""
    shapes.make_ade(staging, num_train=2, num_val=2, image_size=TOY_IMAGE_SIZE, seed=0)
    root = staging / 'ADEChallengeData2016'
    classes = cfg.train_dataloader.dataset.metainfo['classes']
    assert len(classes) == len(shapes.ADE_TOY_CLASSES)
    for loader in LOADERS:
        dataset = cfg[loader].dataset
        folder = {'train': 'training', 'val': 'validation'}[SOURCE_SPLIT[loader]]
        images = Path(dataset.data_root) / dataset.data_prefix.img_path
        label_maps = Path(dataset.data_root) / dataset.data_prefix.seg_map_path
        shutil.copytree(root / 'images' / folder, images)
        label_maps.mkdir(parents=True)
        for path in sorted((root / 'annotations' / folder).glob('*.png')):
            values = np.asarray(Image.open(path)) - shapes.ADE_BACKGROUND_VALUE
            assert values.min() >= 0 and values.max() < len(classes)
            Image.fromarray(values.astype(np.uint8)).save(label_maps / path.name)


def run_check_dataset(config: str, capsys) -> str:
    status = check_dataset.main([str(CONFIG_DIR / config)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert 'check_dataset: no problems found (splits checked: train, val, test)' in out
    return out


def train_validate_test(config: str, tmp_path: Path):
    cfg = toy_config(load_repo_config(config), None)  # None: the recipe's data and classes
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    with LogCapture() as log:
        runner.train()
        test_metrics = runner.test()
    assert runner.iter == 1
    return runner, test_metrics, log.messages


def test_the_recipes_name_their_data_and_classes_in_every_split():
    for config in (DETECTION, SEGMENTATION):
        cfg = load_repo_config(config)
        classes = cfg.metainfo['classes']
        for loader in LOADERS:
            dataset = cfg[loader].dataset
            assert dataset.data_root == cfg.data_root
            assert tuple(dataset.metainfo['classes']) == tuple(classes), loader
        roots = {cfg[loader].dataset.data_prefix.get('img') or
                 cfg[loader].dataset.data_prefix.img_path for loader in LOADERS}
        assert len(roots) == 3, 'train, val and test read three folders'
    det = load_repo_config(DETECTION)
    for split in ('val', 'test'):
        dataset = det[f'{split}_dataloader'].dataset
        assert det[f'{split}_evaluator'].ann_file == dataset.data_root + dataset.ann_file
    assert det.model.roi_head.bbox_head.num_classes == 5
    assert det.model.roi_head.mask_head.num_classes == 5
    seg = load_repo_config(SEGMENTATION)
    assert seg.model.decode_head.num_classes == seg.model.auxiliary_head.num_classes == 6


def test_own_coco_recipe_checks_trains_validates_and_tests(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipe's data paths are relative, as for a user
    cfg = load_repo_config(DETECTION)
    classes = tuple(cfg.metainfo['classes'])
    make_own_coco(cfg, tmp_path / 'staging')
    run_check_dataset(DETECTION, capsys)

    runner, test_metrics, _ = train_validate_test(DETECTION, tmp_path)
    roi_head = runner.model.roi_head
    assert roi_head.bbox_head.num_classes == 5
    assert roi_head.bbox_head.fc_cls.out_features == 5 + 1  # and the background
    assert roi_head.mask_head.num_classes == 5
    assert roi_head.mask_head.conv_logits.out_channels == 5
    assert tuple(runner.train_dataloader.dataset.metainfo['classes']) == classes
    for evaluator, split in ((runner.val_evaluator, 'val'), (runner.test_evaluator, 'test')):
        metric = evaluator.metrics[0]
        assert tuple(metric.dataset_meta['classes']) == classes
        # COCO's evaluation found the recipe's categories, by name, in that split's file.
        assert metric._coco_api.dataset['info']['description'] == f'{split}_dataloader'
        names = [metric._coco_api.cats[cat_id]['name'] for cat_id in metric.cat_ids]
        assert tuple(names) == classes
    scalars = runner.message_hub.log_scalars
    assert 'val/coco/bbox_mAP' in scalars and 'val/coco/segm_mAP' in scalars
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(test_metrics)


def test_own_segmentation_recipe_checks_trains_validates_and_tests(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.chdir(tmp_path)
    cfg = load_repo_config(SEGMENTATION)
    classes = tuple(cfg.metainfo['classes'])
    make_own_segmentation(cfg, tmp_path / 'staging')
    run_check_dataset(SEGMENTATION, capsys)

    runner, test_metrics, messages = train_validate_test(SEGMENTATION, tmp_path)
    for head in (runner.model.decode_head, runner.model.auxiliary_head):
        assert head.num_classes == 6
        assert head.conv_seg.out_channels == 6
    assert tuple(runner.train_dataloader.dataset.metainfo['classes']) == classes
    for evaluator in (runner.val_evaluator, runner.test_evaluator):
        assert tuple(evaluator.metrics[0].dataset_meta['classes']) == classes
    assert 'val/mIoU' in runner.message_hub.log_scalars and 'mIoU' in test_metrics
    # The per-class table of the evaluation (the message after its title) names the recipe's
    # classes, in order.
    table = messages[messages.index('per class results:') + 1]
    rows = [line.split('|')[1].strip() for line in table.splitlines() if line.startswith('|')]
    assert tuple(rows[1:]) == classes
