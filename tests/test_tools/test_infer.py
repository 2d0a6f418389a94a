"""tools/infer.py on a detection, a segmentation and a classification config, run as a user
would (subprocess, random-weight checkpoint) on a folder holding one broken image and two images
of one name in two subfolders; --score-thr and --batch-size on the detection config."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from helpers import TOOLS_DIR, build_model, load_repo_config, sitecustomize_env, toy_config
from mmengine.config import Config

from cvt_mm.apis import classifier_cfg, input_root, list_images, output_names
from cvt_mm.testing import FAST_TEST_ARCH
from cvt_mm.toy import shapes

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
GOOD_IMAGES = ('a/img.jpg', 'b/img.jpg', 'c.png')  # two of one name, in two folders
BROKEN_IMAGE = 'broken.jpg'
# Lossless and of one size: drawings with nothing drawn are the image itself, and a batch of two
# needs no padding that one image would not get.
DETECTION_IMAGES = ('a/img.png', 'b/img.png')
# Run at start-up of tools/infer.py: prints the batch size of every forward pass at exit.
BATCH_SIZE_SPY = '''
import atexit, sys
from mmengine.infer import infer

sizes = []
forward = infer.BaseInferencer.forward

def counted_forward(self, inputs, **kwargs):
    sizes.append(len(inputs['inputs']))
    return forward(self, inputs, **kwargs)

infer.BaseInferencer.forward = counted_forward
atexit.register(lambda: print(f'forward batch sizes: {sizes}', file=sys.stderr))
'''


def write_images(folder, names):
    """Random 96x72 images (mmcv makes the subfolders)."""
    rng = np.random.default_rng(0)
    for name in names:
        mmcv.imwrite(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8), str(folder / name))
    return folder


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = write_images(tmp_path_factory.mktemp('images'), GOOD_IMAGES)
    (folder / BROKEN_IMAGE).write_bytes(b'not an image')
    return folder


def run_infer(config, checkpoint, source, out_dir, *options, env=os.environ):
    return subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'infer.py'), str(config), str(checkpoint), str(source),
         '--out-dir', str(out_dir), '--device', 'cpu', *options],
        capture_output=True, text=True, timeout=600, cwd=out_dir.parent,
        env=dict(env, OMP_NUM_THREADS='1', COLUMNS='60'))


def without_suffixes(folder) -> list:
    """The files under ``folder``, as relative paths without their suffixes, sorted."""
    return sorted(path.relative_to(folder).with_suffix('').as_posix()
                  for path in folder.rglob('*') if path.is_file())


def write_config_and_checkpoint(scope: str, root):
    config = root / f'{scope}.py'
    if scope == 'mmpretrain':
        num_classes = len(shapes.SHAPE_CLASSES)
        config.write_text(CLASSIFICATION_CONFIG.format(
            model=classifier_cfg(FAST_TEST_ARCH, num_classes), num_classes=num_classes))
        cfg = Config.fromfile(config)
    else:
        cfg = toy_config(load_repo_config(DENSE_CONFIGS[scope]), root / 'data')
        cfg.dump(config)
    checkpoint = root / f'{scope}.pth'
    torch.save({'state_dict': build_model(cfg).state_dict()}, checkpoint)
    return config, checkpoint


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_infer_draws_and_writes_json_and_reports_the_broken_image(scope, images, tmp_path):
    """Every good image gets its drawing and json at its path relative to the input folder:
    a/img.jpg and b/img.jpg two of each."""
    config, checkpoint = write_config_and_checkpoint(scope, tmp_path)
    out_dir = tmp_path / 'out'
    result = run_infer(config, checkpoint, images, out_dir)
    assert result.returncode == 1, result.stderr[-3000:]  # the broken image
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert error_lines == [f'error: {images / BROKEN_IMAGE}: ValueError: cannot decode the '
                           'image'], result.stderr[-3000:]
    assert '1 of 4 images failed' in result.stderr
    assert 'Inference' in result.stderr  # the progress bar

    stems = [Path(name).with_suffix('').as_posix() for name in GOOD_IMAGES]
    assert without_suffixes(out_dir / 'vis') == stems
    json_files = sorted((out_dir / 'preds').rglob('*.json'))
    assert [path.relative_to(out_dir / 'preds').with_suffix('').as_posix()
            for path in json_files] == stems
    for name in GOOD_IMAGES:
        pred_file = (out_dir / 'preds' / name).with_suffix('.json')
        prediction = json.loads(pred_file.read_text())
        if scope == 'mmdet':
            assert set(prediction) >= {'labels', 'scores', 'bboxes', 'masks'}
            assert len(prediction['labels']) == len(prediction['bboxes'])
        elif scope == 'mmseg':
            label_map = mmcv.imread(str(pred_file.parent / prediction['label_map']),
                                    flag='unchanged')
            assert label_map.shape == (72, 96) == tuple(prediction['shape'])
            assert sum(prediction['class_pixels'].values()) == 72 * 96
        else:
            assert len(prediction['pred_scores']) == len(shapes.SHAPE_CLASSES)
            assert prediction['pred_label'] == int(np.argmax(prediction['pred_scores']))
            assert prediction['img_path'].endswith(name)


@pytest.fixture(scope='module')
def detection(tmp_path_factory):
    """The toy Mask R-CNN's config and random checkpoint, and a folder of two images."""
    root = tmp_path_factory.mktemp('detection')
    config, checkpoint = write_config_and_checkpoint('mmdet', root)
    return config, checkpoint, write_images(root / 'images', DETECTION_IMAGES)


def detection_outputs(detection, out_dir, *options, env=os.environ):
    """tools/infer.py's json per image, by the image's name, and its stderr."""
    config, checkpoint, folder = detection
    result = run_infer(config, checkpoint, folder, out_dir, *options, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: json.loads((out_dir / 'preds' / name).with_suffix('.json').read_text())
            for name in DETECTION_IMAGES}, result.stderr


@pytest.fixture(scope='module')
def all_detections(detection, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('all_detections') / 'out'
    return out_dir, detection_outputs(detection, out_dir, '--score-thr', '0')[0]


def test_score_thr_keeps_the_detections_above_it(detection, all_detections, tmp_path):
    """0 keeps every detection the model returns (its max_per_img, random weights scoring
    about 0.19 each), 1.01 none, in the json and in the drawings alike."""
    config, _, folder = detection
    all_dir, everything = all_detections
    none_dir = tmp_path / 'out'
    nothing = detection_outputs(detection, none_dir, '--score-thr', '1.01')[0]
    max_per_img = Config.fromfile(config).model.test_cfg.rcnn.max_per_img
    for name in DETECTION_IMAGES:
        kept = everything[name]
        assert len(kept['scores']) == len(kept['bboxes']) == len(kept['masks']) == max_per_img
        assert nothing[name] == dict(labels=[], scores=[], bboxes=[], masks=[])
        image = mmcv.imread(str(folder / name))
        assert (mmcv.imread(str(none_dir / 'vis' / name)) == image).all()  # nothing drawn
        assert (mmcv.imread(str(all_dir / 'vis' / name)) != image).any()


def test_batch_size_2_gives_the_predictions_of_batch_size_1(detection, all_detections,
                                                             tmp_path):
    _, one_by_one = all_detections
    batched, stderr = detection_outputs(detection, tmp_path / 'out', '--score-thr', '0',
                                        '--batch-size', '2',
                                        env=sitecustomize_env(tmp_path / 'site', BATCH_SIZE_SPY))
    assert 'forward batch sizes: [2]' in stderr, stderr[-3000:]  # both images in one pass
    for name in DETECTION_IMAGES:
        single, pair = one_by_one[name], batched[name]
        assert pair['labels'] == single['labels'] and pair['masks'] == single['masks']
        # Float noise only: a batch of two runs other kernels than one image.
        np.testing.assert_allclose(pair['scores'], single['scores'], atol=1e-5)
        np.testing.assert_allclose(pair['bboxes'], single['bboxes'], atol=1e-3)


def test_score_thr_on_a_segmentation_config_is_refused(images, tmp_path):
    config = tmp_path / 'mmseg.py'
    toy_config(load_repo_config(DENSE_CONFIGS['mmseg']), tmp_path / 'data').dump(config)
    result = run_infer(config, 'none', images, tmp_path / 'out', '--score-thr', '0.5')
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ('error: --score-thr applies to detection configs '
                                              f'(mmdet); {config} is an mmseg config')


def test_list_images_takes_a_file_a_folder_and_a_glob(images):
    assert list_images(images / 'c.png') == [images / 'c.png']
    assert [p.relative_to(images).as_posix() for p in list_images(images)] == [
        'a/img.jpg', 'b/img.jpg', BROKEN_IMAGE, 'c.png']
    assert [p.name for p in list_images(f'{images}/*.png')] == ['c.png']
    with pytest.raises(FileNotFoundError, match='no images'):
        list_images(f'{images}/*.gif')


def test_outputs_are_named_by_the_path_below_the_input(images):
    """A folder: below it; a file: its name; a glob: below its folders before the first
    wildcard."""
    assert input_root(images) == images
    assert input_root(images / 'c.png') == images
    assert input_root(f'{images}/**/*.jpg') == images
    assert input_root(f'{images}/[ab]/*.jpg') == images
    assert input_root('*.jpg') == Path('.')
    found = list_images(f'{images}/**/*.jpg')
    assert [name.as_posix() for name in output_names(found, input_root(f'{images}/**/*.jpg'))] \
        == ['a/img.jpg', 'b/img.jpg', BROKEN_IMAGE]
    with pytest.raises(ValueError, match=r'would write the same predictions \(preds/img\.json\)'):
        output_names([images / 'a' / 'img.jpg', images / 'a' / 'img.png'], images / 'a')
