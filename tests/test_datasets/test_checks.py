"""tools/check_dataset.py and cvt_mm.datasets.checks: every fault kind is named with its file, on
toy COCO, ADE20K and ImageNet sets damaged on purpose; clean sets pass."""
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import TOOLS_DIR, load_repo_config, toy_config
from mmengine.config import Config

from cvt_mm.datasets import checks
from cvt_mm.toy import shapes

NUM_IMAGES = 3


def coco_config(root, tmp_path):
    """The toy-sized real Mask R-CNN config on the COCO set under ``root``/coco, on disk."""
    cfg = toy_config(load_repo_config('cvt13_maskrcnn_coco.py'), root)
    path = tmp_path / 'coco_config.py'
    cfg.dump(path)
    return path


def ade_config(root):
    cfg = toy_config(load_repo_config('cvt13_upernet_ade20k.py'), root)
    return cfg


def imagenet_config(root):
    dataset = dict(type='CustomDataset', data_root=str(root), ann_file='meta/train.txt',
                   data_prefix='train', classes=list(shapes.SHAPE_CLASSES), pipeline=[])
    return Config(dict(default_scope='mmpretrain', train_dataloader=dict(dataset=dataset)))


def run_tool(config, *args):
    return subprocess.run([sys.executable, TOOLS_DIR / 'check_dataset.py', config, *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def coco_root(tmp_path):
    shapes.make_coco(tmp_path / 'coco', num_train=NUM_IMAGES, num_val=NUM_IMAGES,
                         image_size=64, seed=0)
    return tmp_path


def report(results):
    return '\n'.join(f'[{split}] {problem}' for split, problems in results.items()
                     for problem in problems)


def test_clean_coco_set_exits_0(coco_root, tmp_path):
    result = run_tool(coco_config(coco_root, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'no problems found (splits checked: train, val)' in result.stdout


def test_coco_faults_are_named_and_exit_1(coco_root, tmp_path):
    train = coco_root / 'coco' / 'train2017'
    truncated = train / '000000000001.jpg'
    truncated.write_bytes(truncated.read_bytes()[:len(truncated.read_bytes()) // 2])
    missing = train / '000000000002.jpg'
    missing.unlink()
    ann_path = coco_root / 'coco' / 'annotations' / 'instances_train2017.json'
    content = json.loads(ann_path.read_text())
    content['annotations'][0]['bbox'][2] = 0  # width 0
    content['annotations'][1]['category_id'] = 99
    content['annotations'][2]['bbox'][0] = 500  # far right of the 64-px image
    ann_path.write_text(json.dumps(content))
    (coco_root / 'coco' / 'annotations' / 'instances_val2017.json').unlink()

    result = run_tool(coco_config(coco_root, tmp_path), '--splits', 'train', 'val')
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    def line_for(path, kind):
        found = [line for line in lines if str(path) in line and f': {kind}: ' in line]
        assert found, f'no {kind!r} line for {path} in:\n{result.stdout}'
        return found[0]

    assert 'truncated' in line_for(truncated, checks.CORRUPT_IMAGE)
    line_for(missing, checks.MISSING_FILE)
    # The first three annotations are those of image 1.
    annotated = train / '000000000001.jpg'
    assert f'[train] {annotated}: bad box: annotation 1: box [x, y, w, h] = [10.0, 24.0, 0, ' \
        '25.0] is degenerate (w or h <= 0)' in lines
    assert f'[train] {annotated}: bad label: annotation 2: category_id 99 is not one of the 5 ' \
        f'categories of {ann_path}' in lines
    assert f'[train] {annotated}: bad box: annotation 3: box [x, y, w, h] = [500, 31.0, 17.0, ' \
        '17.0] lies outside the 64x64 image' in lines
    assert line_for(ann_path.with_name('instances_val2017.json'),
                    checks.MISSING_ANNOTATION).startswith('[val] ')
    assert lines[-1].startswith('check_dataset: 6 problems (train: 5, val: 1)')


def test_truncated_coco_json_names_the_file(coco_root, tmp_path):
    ann_path = coco_root / 'coco' / 'annotations' / 'instances_train2017.json'
    ann_path.write_text(ann_path.read_text()[:200])
    cfg = Config.fromfile(coco_config(coco_root, tmp_path))
    results = checks.check_config(cfg, ['train'])
    assert [(p.file, p.kind) for p in results['train']] == [
        (str(ann_path), checks.UNPARSABLE_ANNOTATION)]
    assert 'JSONDecodeError' in results['train'][0].detail


def test_ade_label_map_faults(tmp_path):
    shapes.make_ade(tmp_path / 'ade', num_train=NUM_IMAGES, num_val=1, image_size=64, seed=0)
    annotations = tmp_path / 'ade' / 'ADEChallengeData2016' / 'annotations' / 'training'
    wrong_size = annotations / 'ADE_train_00000001.png'
    cv2.imwrite(str(wrong_size), np.ones((32, 64), np.uint8))
    out_of_range = annotations / 'ADE_train_00000002.png'
    label_map = cv2.imread(str(out_of_range), cv2.IMREAD_UNCHANGED)
    label_map[:4, :4] = 200  # 199 after reduce_zero_label; ADE20K has 150 classes
    label_map[4:8, :4] = 0  # 255 after reduce_zero_label: ignored, not a fault
    cv2.imwrite(str(out_of_range), label_map)

    cfg = ade_config(tmp_path)
    results = checks.check_config(cfg, ['train', 'val'])
    assert list(results) == ['train', 'val'] and results['val'] == []
    assert [(p.file, p.kind) for p in results['train']] == [
        (str(wrong_size), checks.SIZE_MISMATCH), (str(out_of_range), checks.BAD_LABEL)], \
        report(results)
    assert 'label map is 64x32 but its image is 64x64' in results['train'][0].detail
    assert 'label values [199] after reduce_zero_label are outside 0..149' in \
        results['train'][1].detail


def test_classification_faults(tmp_path):
    root = tmp_path / 'imagenet'
    shapes.make_imagenet(root, train_per_class=1, val_per_class=1, seed=0)
    meta = root / 'meta' / 'train.txt'
    lines = meta.read_text().splitlines()
    lines[0] = lines[0].rsplit(' ', 1)[0] + ' 7'  # five classes
    meta.write_text('\n'.join(lines) + '\n')
    garbage = root / 'train' / lines[1].split()[0]
    garbage.write_bytes(b'not a JPEG at all' * 20)

    results = checks.check_config(imagenet_config(root))
    problems = results['train']
    assert [(p.file, p.kind) for p in problems] == [
        (str(root / 'train' / lines[0].split()[0]), checks.BAD_LABEL),
        (str(garbage), checks.CORRUPT_IMAGE)], report(results)
    assert 'gt_label [7] is outside the 5 classes' in problems[0].detail
    assert checks.summary_line(results) == \
        'check_dataset: 2 problems (train: 2): 1 bad label, 1 corrupt image'


def test_missing_classification_annotation_file(tmp_path):
    root = tmp_path / 'imagenet'
    shapes.make_imagenet(root, train_per_class=1, val_per_class=1, seed=0)
    (root / 'meta' / 'train.txt').unlink()
    problems = checks.check_config(imagenet_config(root))['train']
    assert [(p.file, p.kind) for p in problems] == [
        (str(root / 'meta' / 'train.txt'), checks.MISSING_ANNOTATION)]


def test_missing_and_empty_ade_folders_are_named_once(tmp_path):
    """A missing label folder is one fault, not one per label map; an image folder without
    images is an empty data set, not a parse failure of an annotation file it does not have."""
    shapes.make_ade(tmp_path / 'ade', num_train=NUM_IMAGES, num_val=1, image_size=64, seed=0)
    root = tmp_path / 'ade' / 'ADEChallengeData2016'
    shutil.rmtree(root / 'annotations' / 'training')
    shutil.rmtree(root / 'images' / 'validation')
    (root / 'images' / 'validation').mkdir()
    results = checks.check_config(ade_config(tmp_path), ['train', 'val'])
    assert {split: [(p.file, p.kind) for p in problems] for split, problems in results.items()} \
        == {'train': [(str(root / 'annotations' / 'training'), checks.MISSING_FOLDER)],
            'val': [(str(root / 'images' / 'validation'), checks.EMPTY_DATASET)]}, report(results)
