"""tools/infer.py on a detection, a segmentation and a classification config, run as a user
would (subprocess, random-weight checkpoint) on a folder holding one broken image."""
import json
import os
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from helpers import TOOLS_DIR, build_model, load_repo_config, toy_config
from mmengine.config import Config

from cvt_mm.apis import classifier_cfg, list_images
from cvt_mm.datasets import toy_shapes
from cvt_mm.testing import TINY_ARCH

DENSE_CONFIGS = {'mmdet': 'cvt13_maskrcnn_coco.py', 'mmseg': 'cvt13_upernet_ade20k.py'}
# What ImageClassificationInferencer needs of a config: the model and the test pipeline.
CLASSIFICATION_CONFIG = """
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['cvt_mm'], allow_failed_imports=False)
model = {model!r}
data_preprocessor = dict(num_classes={num_classes}, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
test_dataloader = dict(batch_size=1, num_workers=0, dataset=dict(
    type='CustomDataset', data_root='', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=64),
        dict(type='PackInputs')]))
"""
GOOD_IMAGES = ('a.jpg', 'b.png')
BROKEN_IMAGE = 'broken.jpg'


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for name in GOOD_IMAGES:
        mmcv.imwrite(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8), str(folder / name))
    (folder / BROKEN_IMAGE).write_bytes(b'not an image')
    return folder


def write_config_and_checkpoint(scope: str, root):
    config = root / f'{scope}.py'
    if scope == 'mmpretrain':
        num_classes = len(toy_shapes.SHAPE_CLASSES)
        config.write_text(CLASSIFICATION_CONFIG.format(
            model=classifier_cfg(TINY_ARCH, num_classes), num_classes=num_classes))
        cfg = Config.fromfile(config)
    else:
        cfg = toy_config(load_repo_config(DENSE_CONFIGS[scope]), root / 'data')
        cfg.dump(config)
    checkpoint = root / f'{scope}.pth'
    torch.save({'state_dict': build_model(cfg).state_dict()}, checkpoint)
    return config, checkpoint


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_infer_draws_and_writes_json_and_reports_the_broken_image(scope, images, tmp_path):
    config, checkpoint = write_config_and_checkpoint(scope, tmp_path)
    out_dir = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'infer.py'), str(config), str(checkpoint), str(images),
         '--out-dir', str(out_dir), '--device', 'cpu'],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS='1', COLUMNS='60'))
    assert result.returncode == 1, result.stderr[-3000:]  # the broken image
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert error_lines == [f'error: {images / BROKEN_IMAGE}: ValueError: cannot decode the '
                           'image'], result.stderr[-3000:]
    assert '1 of 3 images failed' in result.stderr
    assert 'Inference' in result.stderr  # the progress bar

    drawn = sorted(path.stem for path in (out_dir / 'vis').iterdir())
    assert drawn == ['a', 'b']
    for name in GOOD_IMAGES:
        stem = name.split('.')[0]
        prediction = json.loads((out_dir / 'preds' / f'{stem}.json').read_text())
        if scope == 'mmdet':
            assert set(prediction) >= {'labels', 'scores', 'bboxes', 'masks'}
            assert len(prediction['labels']) == len(prediction['bboxes'])
        elif scope == 'mmseg':
            label_map = mmcv.imread(str(out_dir / 'preds' / prediction['label_map']),
                                    flag='unchanged')
            assert label_map.shape == (72, 96) == tuple(prediction['shape'])
            assert sum(prediction['class_pixels'].values()) == 72 * 96
        else:
            assert len(prediction['pred_scores']) == len(toy_shapes.SHAPE_CLASSES)
            assert prediction['pred_label'] == int(np.argmax(prediction['pred_scores']))
            assert prediction['img_path'].endswith(name)


def test_list_images_takes_a_file_a_folder_and_a_glob(images):
    assert list_images(images / 'a.jpg') == [images / 'a.jpg']
    assert [p.name for p in list_images(images)] == ['a.jpg', 'b.png', BROKEN_IMAGE]
    assert [p.name for p in list_images(f'{images}/*.png')] == ['b.png']
    with pytest.raises(FileNotFoundError, match='no images'):
        list_images(f'{images}/*.gif')
