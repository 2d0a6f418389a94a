"""Tests for tools/make_toy_data.py: on-disk formats, determinism, and loading by OpenMMLab."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

TOOL_PATH = Path(__file__).resolve().parents[1] / 'tools' / 'make_toy_data.py'


def load_tool():
    # tools/ is not a package, so import the script by path.
    spec = importlib.util.spec_from_file_location('make_toy_data', TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toy = load_tool()
NUM_CLASSES = len(toy.SHAPE_CLASSES)
NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 6, 4, 128
TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 2


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    """All three sets, generated once through the command line entry point."""
    root = tmp_path_factory.mktemp('toy')
    toy.main(['--out', str(root), '--seed', '0', '--num-train', str(NUM_TRAIN),
              '--num-val', str(NUM_VAL), '--image-size', str(IMAGE_SIZE),
              '--cls-train-per-class', str(TRAIN_PER_CLASS),
              '--cls-val-per-class', str(VAL_PER_CLASS)])
    return root


def file_contents(root):
    return {path.relative_to(root): path.read_bytes()
            for path in sorted(Path(root).rglob('*')) if path.is_file()}


def read_label_map(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ----------------------------------------------------------------------------- generator logic
GENERATOR_CALLS = {
    'coco': lambda out, seed: toy.make_coco(out, 2, 2, 96, seed),
    'ade': lambda out, seed: toy.make_ade(out, 2, 2, 96, seed),
    'imagenet': lambda out, seed: toy.make_imagenet(out, 1, 1, seed),
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
    toy.make_coco(tmp_path / 'small', 2, 1, 96, seed=0)
    toy.make_coco(tmp_path / 'large', 3, 1, 96, seed=0)
    for name in ('000000000001.jpg', '000000000002.jpg'):
        assert ((tmp_path / 'small/train2017' / name).read_bytes()
                == (tmp_path / 'large/train2017' / name).read_bytes())


def test_scene_masks_are_visible_parts_and_colour_contrasts():
    rng = np.random.default_rng(0)
    labels = [0, 1, 2, 3, 4, 0, 1]
    image, instances = toy.compose_scene(rng, 160, 160, labels, toy.DETECTION_OBJECT_SIZE)
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    assert 1 <= len(instances) <= len(labels)
    stacked = np.stack([visible for _, visible in instances]).astype(int)
    assert stacked.sum(axis=0).max() == 1, 'visible masks of one image must not overlap'
    assert all(visible.sum() >= toy.MIN_VISIBLE_PIXELS for _, visible in instances)
    assert all(0 <= label < NUM_CLASSES for label, _ in instances)


@pytest.mark.parametrize('name', toy.SHAPE_CLASSES)
def test_each_class_pattern_has_its_kind(name):
    label, colour = toy.SHAPE_CLASSES.index(name), np.array([30., 200., 120.])
    fill = toy.class_pattern(np.random.default_rng(0), label, colour, 64, 64)
    colours, counts = np.unique(fill.reshape(-1, 3), axis=0, return_counts=True)
    assert any((fill_colour == colour).all() for fill_colour in colours)
    if toy.CLASS_PATTERNS[name] == 'flat':
        assert len(colours) == 1
    else:  # two colours, far enough apart to see, each covering a real share of the patch
        assert len(colours) == 2 and np.abs(colours[0] - colours[1]).min() >= 50
        assert counts.min() >= 0.1 * fill.shape[0] * fill.shape[1]


def test_only_the_ade_scenes_are_patterned_and_denser():
    assert not toy.SCENE_LAYOUTS['coco']['patterned'] and toy.SCENE_LAYOUTS['ade']['patterned']
    assert set(toy.CLASS_PATTERNS) == set(toy.SHAPE_CLASSES)
    assert len(set(toy.CLASS_PATTERNS.values())) == NUM_CLASSES
    low, _ = toy.SCENE_LAYOUTS['ade']['objects_per_image']
    assert low > toy.SCENE_LAYOUTS['coco']['objects_per_image'][0]


def test_shape_classes_are_alphabetical_so_folder_scans_agree_with_meta_files():
    assert list(toy.SHAPE_CLASSES) == sorted(toy.SHAPE_CLASSES)
    assert len(set(toy.SHAPE_CLASSES)) == NUM_CLASSES >= 3
    assert toy.ADE_TOY_CLASSES == ('background', ) + toy.SHAPE_CLASSES


def test_main_skips_finished_sets_and_force_regenerates(tmp_path, capsys):
    args = ['--out', str(tmp_path), '--tasks', 'coco', '--num-train', '1', '--num-val', '1',
            '--image-size', '64']
    toy.main(args)
    assert json.loads((tmp_path / 'coco' / toy.COMPLETION_MARKER).read_text())['complete']
    image = tmp_path / 'coco/train2017/000000000001.jpg'
    original = image.read_bytes()
    image.write_bytes(b'edited')
    toy.main(args)
    assert 'skipped' in capsys.readouterr().out
    assert image.read_bytes() == b'edited'
    toy.main(args + ['--force'])
    assert image.read_bytes() == original
    # A set drawn by an older version of the tool is kept, with a hint to regenerate it.
    marker = tmp_path / 'coco' / toy.COMPLETION_MARKER
    recorded = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(recorded, drawing_version=toy.DRAWING_VERSION - 1)))
    capsys.readouterr()
    toy.main(args)
    assert 'older version' in capsys.readouterr().out and image.read_bytes() == original


def test_main_refuses_directories_it_did_not_create(tmp_path, capsys):
    foreign = tmp_path / 'coco' / 'precious.txt'
    foreign.parent.mkdir()
    foreign.write_text('real data')
    toy.main(['--out', str(tmp_path), '--tasks', 'coco', '--force', '--num-train', '1',
              '--num-val', '1'])
    assert 'not made by this tool' in capsys.readouterr().out
    assert foreign.read_text() == 'real data'
    assert not (tmp_path / 'coco' / 'train2017').exists()


# ----------------------------------------------------------------------------- on-disk formats
@pytest.mark.parametrize('split,num_images', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_coco_annotations_load_and_match_their_masks(toy_root, split, num_images):
    coco_root = toy_root / 'coco'
    coco = COCO(str(coco_root / 'annotations' / f'instances_{split}2017.json'))
    assert [coco.cats[i]['name'] for i in sorted(coco.cats)] == list(toy.SHAPE_CLASSES)
    assert sorted(coco.cats) == list(range(1, NUM_CLASSES + 1))
    assert len(coco.imgs) == num_images
    for image_info in coco.imgs.values():
        image = cv2.imread(str(coco_root / f'{split}2017' / image_info['file_name']))
        assert image.shape[:2] == (image_info['height'], image_info['width']) == (IMAGE_SIZE, ) * 2
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_info['id']))
        low, high = toy.DETECTION_OBJECTS_PER_IMAGE
        assert low <= len(annotations) <= high
        masks = []
        for ann in annotations:
            mask = coco.annToMask(ann)
            assert mask.shape == image.shape[:2]
            assert ann['iscrowd'] == 0 and ann['category_id'] in coco.cats
            assert abs(mask.sum() - ann['area']) <= 1 and ann['area'] >= toy.MIN_VISIBLE_PIXELS
            rows, cols = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= IMAGE_SIZE and y + h <= IMAGE_SIZE
            assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            masks.append(mask)
        assert np.sum(masks, axis=0).max() == 1, 'occluded parts must not stay in masks'
    assert (coco_root / 'classes.txt').read_text().split() == list(toy.SHAPE_CLASSES)


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
    _, instances = toy.multi_object_scene(0, 'ade', split, 0, IMAGE_SIZE)
    expected = np.ones((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for label, visible in instances:
        expected[visible] = label + 2
    np.testing.assert_array_equal(read_label_map(label_maps[0]), expected)


@pytest.mark.parametrize('split,per_class', [('train', TRAIN_PER_CLASS), ('val', VAL_PER_CLASS)])
def test_imagenet_folders_and_meta_files_agree(toy_root, split, per_class):
    root = toy_root / 'imagenet'
    assert sorted(p.name for p in (root / split).iterdir()) == list(toy.SHAPE_CLASSES)
    lines = (root / 'meta' / f'{split}.txt').read_text().splitlines()
    assert len(lines) == per_class * NUM_CLASSES
    for line in lines:
        relative_path, label = line.split()
        image = cv2.imread(str(root / split / relative_path))
        low, high = toy.CLASSIFICATION_IMAGE_SIDE
        assert image is not None and image.shape[0] == image.shape[1]
        assert low <= image.shape[0] <= high
        assert toy.SHAPE_CLASSES[int(label)] == Path(relative_path).parent.name
    for name in toy.SHAPE_CLASSES:
        assert len(list((root / split / name).glob('*.JPEG'))) == per_class


# ----------------------------------------------------------------------------- OpenMMLab loaders
def test_mmdet_coco_dataset_loads_boxes_masks_and_labels(toy_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    coco_root = toy_root / 'coco'
    dataset = CocoDataset(
        data_root=str(coco_root), ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'), metainfo=dict(classes=toy.SHAPE_CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(dataset) == NUM_VAL
    assert dataset.metainfo['classes'] == toy.SHAPE_CLASSES
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
        reduce_zero_label=True, metainfo=dict(classes=toy.ADE_TOY_CLASSES),
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
    assert tuple(scanned.CLASSES) == toy.SHAPE_CLASSES
    from_meta = ImageNet(data_root=root, split='train', metainfo=dict(classes=toy.SHAPE_CLASSES))
    assert len(from_meta) == len(scanned)

    def labels_by_path(dataset):
        return {info['img_path']: int(info['gt_label']) for info in dataset.load_data_list()}

    assert labels_by_path(scanned) == labels_by_path(from_meta)
    val = ImageNet(data_root=root, split='val', metainfo=dict(classes=toy.SHAPE_CLASSES))
    assert len(val) == VAL_PER_CLASS * NUM_CLASSES
