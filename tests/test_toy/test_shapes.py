"""Tests for cvt_mm.toy.shapes and its command line tools/make_toy_data.py: on-disk
formats, determinism, preparing a data root, and loading by OpenMMLab."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import TOOLS_DIR
from pycocotools.coco import COCO

from cvt_mm.toy import shapes

NUM_CLASSES = len(shapes.SHAPE_CLASSES)
NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 6, 4, 128
TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 2


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    """All three sets, generated once by the command line tool as users run it."""
    root = tmp_path_factory.mktemp('toy')
    argv = [sys.executable, str(TOOLS_DIR / 'make_toy_data.py'), '--out', str(root),
            '--seed', '0', '--num-train', str(NUM_TRAIN), '--num-val', str(NUM_VAL),
            '--image-size', str(IMAGE_SIZE), '--cls-train-per-class', str(TRAIN_PER_CLASS),
            '--cls-val-per-class', str(VAL_PER_CLASS)]
    result = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result.stdout


@pytest.fixture(scope='module')
def toy_root(cli_run):
    return cli_run[0]


def file_contents(root):
    return {path.relative_to(root): path.read_bytes()
            for path in sorted(Path(root).rglob('*')) if path.is_file()}


def read_label_map(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ----------------------------------------------------------------------------- generator logic
GENERATOR_CALLS = {
    'coco': lambda out, seed: shapes.make_coco(out, 2, 2, 96, seed),
    'ade': lambda out, seed: shapes.make_ade(out, 2, 2, 96, seed),
    'imagenet': lambda out, seed: shapes.make_imagenet(out, 1, 1, seed),
}


@pytest.mark.parametrize('task', sorted(GENERATOR_CALLS))
def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, task):
    generate = GENERATOR_CALLS[task]
    generate(tmp_path / 'first', 0)
    generate(tmp_path / 'again', 0)
    generate(tmp_path / 'other', 1)
    first, again, other = (file_contents(tmp_path / name) for name in ('first', 'again', 'other'))
    assert first and first == again
    assert first.keys() == other.keys()
    images = [name for name in first if name.suffix.lower() in ('.jpg', '.jpeg')]
    assert images and all(first[name] != other[name] for name in images)


def test_growing_a_set_keeps_its_first_images(tmp_path):
    shapes.make_coco(tmp_path / 'small', 2, 1, 96, seed=0)
    shapes.make_coco(tmp_path / 'large', 3, 1, 96, seed=0)
    for name in ('000000000001.jpg', '000000000002.jpg'):
        assert ((tmp_path / 'small/train2017' / name).read_bytes()
                == (tmp_path / 'large/train2017' / name).read_bytes())


def test_scene_masks_are_visible_parts_and_colour_contrasts():
    rng = np.random.default_rng(0)
    labels = [0, 1, 2, 3, 4, 0, 1]
    image, instances = shapes.compose_scene(rng, 160, 160, labels,
                                                shapes.DETECTION_OBJECT_SIZE)
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    assert 1 <= len(instances) <= len(labels)
    stacked = np.stack([visible for _, visible in instances]).astype(int)
    assert stacked.sum(axis=0).max() == 1, 'visible masks of one image must not overlap'
    assert all(visible.sum() >= shapes.MIN_VISIBLE_PIXELS for _, visible in instances)
    assert all(0 <= label < NUM_CLASSES for label, _ in instances)


@pytest.mark.parametrize('name', shapes.SHAPE_CLASSES)
def test_each_class_pattern_has_its_kind(name):
    label, colour = shapes.SHAPE_CLASSES.index(name), np.array([30., 200., 120.])
    fill = shapes.class_pattern(np.random.default_rng(0), label, colour, 64, 64)
    colours, counts = np.unique(fill.reshape(-1, 3), axis=0, return_counts=True)
    assert any((fill_colour == colour).all() for fill_colour in colours)
    if shapes.CLASS_PATTERNS[name] == 'flat':
        assert len(colours) == 1
    else:  # two colours, far enough apart to see, each covering a real share of the patch
        assert len(colours) == 2 and np.abs(colours[0] - colours[1]).min() >= 50
        assert counts.min() >= 0.1 * fill.shape[0] * fill.shape[1]


def test_only_the_ade_scenes_are_patterned_and_denser():
    layouts = shapes.SCENE_LAYOUTS
    assert not layouts['coco']['patterned'] and layouts['ade']['patterned']
    assert set(shapes.CLASS_PATTERNS) == set(shapes.SHAPE_CLASSES)
    assert len(set(shapes.CLASS_PATTERNS.values())) == NUM_CLASSES
    low, _ = shapes.SCENE_LAYOUTS['ade']['objects_per_image']
    assert low > shapes.SCENE_LAYOUTS['coco']['objects_per_image'][0]


def test_shape_classes_are_alphabetical_so_folder_scans_agree_with_meta_files():
    assert list(shapes.SHAPE_CLASSES) == sorted(shapes.SHAPE_CLASSES)
    assert len(set(shapes.SHAPE_CLASSES)) == NUM_CLASSES >= 3
    assert shapes.ADE_TOY_CLASSES == ('background', ) + shapes.SHAPE_CLASSES


def test_cli_writes_every_set_and_prints_one_line_each(cli_run):
    root, stdout = cli_run
    lines = stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(shapes.LAYOUTS)
    for task, line in zip(shapes.LAYOUTS, lines):
        assert f'-> {root / task} (' in line
        recorded = shapes.read_marker(root / task)
        assert recorded['complete'] and recorded['drawing_version'] == shapes.DRAWING_VERSION
    assert shapes.read_marker(root / 'coco')['params'] == dict(
        num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=IMAGE_SIZE, seed=0)
    assert shapes.read_marker(root / 'imagenet')['params'] == dict(
        train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, seed=0)


def test_ensure_toy_set_keeps_finished_sets_and_force_regenerates(tmp_path):
    params = dict(num_train=1, num_val=1, image_size=64)
    outcome = shapes.ensure_toy_set(tmp_path, 'coco', params)
    assert outcome.action == 'generated' and outcome.root == tmp_path / 'coco'
    # Missing parameters take the generator's defaults, and the marker records all of them.
    assert outcome.params == dict(params, seed=0)
    assert shapes.read_marker(tmp_path / 'coco')['params'] == outcome.params
    image = tmp_path / 'coco/train2017/000000000001.jpg'
    original = image.read_bytes()
    image.write_bytes(b'edited')

    kept = shapes.ensure_toy_set(tmp_path, 'coco', params)
    assert (kept.action, kept.outdated) == ('kept', '') and 'skipped' in kept.message
    assert image.read_bytes() == b'edited'
    # Other parameters: kept too, with a note; the caller decides (force) to regenerate.
    other = shapes.ensure_toy_set(tmp_path, 'coco', dict(params, num_train=2))
    assert (other.action, other.outdated) == ('kept', 'params')
    assert other.recorded_params == outcome.params and 'other parameters' in other.message
    assert image.read_bytes() == b'edited'

    forced = shapes.ensure_toy_set(tmp_path, 'coco', params, force=True)
    assert forced.action == 'generated' and image.read_bytes() == original
    # A set drawn by an older version of the tool is kept, with a hint to regenerate it.
    marker = tmp_path / 'coco' / shapes.COMPLETION_MARKER
    recorded = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(recorded, drawing_version=shapes.DRAWING_VERSION - 1)))
    older = shapes.ensure_toy_set(tmp_path, 'coco', params)
    assert (older.action, older.outdated) == ('kept', 'drawing')
    assert 'older version' in older.message and image.read_bytes() == original


def test_ensure_toy_set_redoes_an_unfinished_set(tmp_path):
    params = dict(num_train=1, num_val=1, image_size=64)
    shapes.ensure_toy_set(tmp_path, 'coco', params)
    marker = tmp_path / 'coco' / shapes.COMPLETION_MARKER
    marker.write_text(json.dumps(dict(complete=False, params=params)))  # as if cut short
    leftover = tmp_path / 'coco' / 'train2017' / 'leftover.jpg'
    leftover.write_bytes(b'partial')
    assert shapes.ensure_toy_set(tmp_path, 'coco', params).action == 'generated'
    assert not leftover.exists() and shapes.read_marker(tmp_path / 'coco')['complete']


def test_ensure_toy_set_refuses_directories_it_did_not_create(tmp_path):
    foreign = tmp_path / 'coco' / 'precious.txt'
    foreign.parent.mkdir()
    foreign.write_text('real data')
    outcome = shapes.ensure_toy_set(tmp_path, 'coco', dict(num_train=1, num_val=1),
                                        force=True)
    assert outcome.action == 'refused' and 'not made by this tool' in outcome.message
    assert foreign.read_text() == 'real data'
    assert not (tmp_path / 'coco' / 'train2017').exists()
    assert not (tmp_path / 'coco' / shapes.COMPLETION_MARKER).exists()


def test_ensure_toy_set_rejects_unknown_tasks_and_parameters(tmp_path):
    with pytest.raises(ValueError, match='unknown toy task'):
        shapes.ensure_toy_set(tmp_path, 'voc')
    with pytest.raises(TypeError, match='image_size'):
        shapes.ensure_toy_set(tmp_path, 'imagenet', dict(image_size=64))
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- on-disk formats
@pytest.mark.parametrize('split,num_images', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_coco_annotations_load_and_match_their_masks(toy_root, split, num_images):
    coco_root = toy_root / 'coco'
    coco = COCO(str(coco_root / 'annotations' / f'instances_{split}2017.json'))
    assert [coco.cats[i]['name'] for i in sorted(coco.cats)] == list(shapes.SHAPE_CLASSES)
    assert sorted(coco.cats) == list(range(1, NUM_CLASSES + 1))
    assert len(coco.imgs) == num_images
    for image_info in coco.imgs.values():
        image = cv2.imread(str(coco_root / f'{split}2017' / image_info['file_name']))
        assert image.shape[:2] == (image_info['height'], image_info['width']) == (IMAGE_SIZE, ) * 2
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_info['id']))
        low, high = shapes.DETECTION_OBJECTS_PER_IMAGE
        assert low <= len(annotations) <= high
        masks = []
        for ann in annotations:
            mask = coco.annToMask(ann)
            assert mask.shape == image.shape[:2]
            assert ann['iscrowd'] == 0 and ann['category_id'] in coco.cats
            assert abs(mask.sum() - ann['area']) <= 1
            assert ann['area'] >= shapes.MIN_VISIBLE_PIXELS
            rows, cols = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= IMAGE_SIZE and y + h <= IMAGE_SIZE
            assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            masks.append(mask)
        assert np.sum(masks, axis=0).max() == 1, 'occluded parts must not stay in masks'
    assert (coco_root / 'classes.txt').read_text().split() == list(shapes.SHAPE_CLASSES)


@pytest.mark.parametrize('folder,num_images', [('training', NUM_TRAIN), ('validation', NUM_VAL)])
def test_ade_label_maps_match_images_and_use_valid_ids(toy_root, folder, num_images):
    root = toy_root / 'ade' / 'ADEChallengeData2016'
    images = sorted((root / 'images' / folder).glob('*.jpg'))
    label_maps = sorted((root / 'annotations' / folder).glob('*.png'))
    assert len(images) == num_images
    assert [path.stem for path in images] == [path.stem for path in label_maps]
    # The documented convention: 1 = background, 2..K+1 = shapes, never 0 (ignored by mmseg).
    valid_ids = set(range(1, NUM_CLASSES + 2))
    for image_path, label_path in zip(images, label_maps):
        label_map = read_label_map(label_path)
        assert label_map.ndim == 2 and label_map.dtype == np.uint8
        assert label_map.shape == cv2.imread(str(image_path)).shape[:2]
        values = set(np.unique(label_map).tolist())
        assert values <= valid_ids
        assert 1 in values and len(values) >= 2
    # The first map must be exactly the regenerated scene under the documented id mapping.
    split = 'train' if folder == 'training' else 'val'
    _, instances = shapes.multi_object_scene(0, 'ade', split, 0, IMAGE_SIZE)
    expected = np.ones((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for label, visible in instances:
        expected[visible] = label + 2
    np.testing.assert_array_equal(read_label_map(label_maps[0]), expected)


@pytest.mark.parametrize('split,per_class', [('train', TRAIN_PER_CLASS), ('val', VAL_PER_CLASS)])
def test_imagenet_folders_and_meta_files_agree(toy_root, split, per_class):
    root = toy_root / 'imagenet'
    assert sorted(p.name for p in (root / split).iterdir()) == list(shapes.SHAPE_CLASSES)
    lines = (root / 'meta' / f'{split}.txt').read_text().splitlines()
    assert len(lines) == per_class * NUM_CLASSES
    for line in lines:
        relative_path, label = line.split()
        image = cv2.imread(str(root / split / relative_path))
        low, high = shapes.CLASSIFICATION_IMAGE_SIDE
        assert image is not None and image.shape[0] == image.shape[1]
        assert low <= image.shape[0] <= high
        assert shapes.SHAPE_CLASSES[int(label)] == Path(relative_path).parent.name
    for name in shapes.SHAPE_CLASSES:
        assert len(list((root / split / name).glob('*.JPEG'))) == per_class


# ----------------------------------------------------------------------------- OpenMMLab loaders
def test_mmdet_coco_dataset_loads_boxes_masks_and_labels(toy_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    coco_root = toy_root / 'coco'
    dataset = CocoDataset(
        data_root=str(coco_root), ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'), metainfo=dict(classes=shapes.SHAPE_CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(dataset) == NUM_VAL
    assert dataset.metainfo['classes'] == shapes.SHAPE_CLASSES
    coco = COCO(str(coco_root / 'annotations/instances_val2017.json'))
    for index in range(len(dataset)):
        sample = dataset[index]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=sample['img_id']))
        expected_masks = np.stack([coco.annToMask(ann) for ann in annotations])
        np.testing.assert_array_equal(sample['gt_masks'].to_ndarray(), expected_masks)
        np.testing.assert_array_equal(sample['gt_bboxes_labels'],
                                      [ann['category_id'] - 1 for ann in annotations])
        expected_boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in annotations)]
        np.testing.assert_allclose(sample['gt_bboxes'].numpy(), expected_boxes)
        assert not sample['gt_ignore_flags'].any()


def test_mmseg_datasets_load_and_reduce_zero_label_gives_toy_ids(toy_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    root = toy_root / 'ade' / 'ADEChallengeData2016'
    prefix = dict(img_path='images/validation', seg_map_path='annotations/validation')
    assert len(ADE20KDataset(data_root=str(root), data_prefix=prefix)) == NUM_VAL
    dataset = BaseSegDataset(
        data_root=str(root), data_prefix=prefix, img_suffix='.jpg', seg_map_suffix='.png',
        reduce_zero_label=True, metainfo=dict(classes=shapes.ADE_TOY_CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations()])
    assert len(dataset) == NUM_VAL
    for index in range(len(dataset)):
        sample = dataset[index]
        on_disk = read_label_map(sample['seg_map_path'])
        np.testing.assert_array_equal(sample['gt_seg_map'], on_disk.astype(np.int64) - 1)
        assert set(np.unique(sample['gt_seg_map']).tolist()) <= set(range(NUM_CLASSES + 1))


def test_mmpretrain_folder_and_ann_file_datasets_agree(toy_root):
    from mmpretrain.datasets import CustomDataset, ImageNet

    root = str(toy_root / 'imagenet')
    scanned = CustomDataset(data_root=root, data_prefix='train')
    assert len(scanned) == TRAIN_PER_CLASS * NUM_CLASSES
    assert tuple(scanned.CLASSES) == shapes.SHAPE_CLASSES
    from_meta = ImageNet(data_root=root, split='train',
                         metainfo=dict(classes=shapes.SHAPE_CLASSES))
    assert len(from_meta) == len(scanned)

    def labels_by_path(dataset):
        return {info['img_path']: int(info['gt_label']) for info in dataset.load_data_list()}

    assert labels_by_path(scanned) == labels_by_path(from_meta)
    val = ImageNet(data_root=root, split='val', metainfo=dict(classes=shapes.SHAPE_CLASSES))
    assert len(val) == VAL_PER_CLASS * NUM_CLASSES
