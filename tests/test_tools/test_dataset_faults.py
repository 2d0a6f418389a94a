"""tools/train.py and tools/test.py on a broken data set, run as a user would: the last line of
stderr names the file or folder at fault and points to tools/check_dataset.py.

COCO (the Mask R-CNN toy config): an annotation file cut at 500 bytes, whose JSONDecodeError
named no file, or missing. ADE20K (the UperNet toy config) has no annotation file: mmseg lists
the images when the data set is built, failing on a missing image folder with a traceback, and
opens each label map only as its sample is loaded, so a missing label folder failed in the
first iteration and an image folder without images in mmengine's serialization ("need at least
one array to concatenate"); each now ends in one line before the run starts.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import TOOLS_DIR, load_repo_config, toy_config

from cvt_mm.toy import shapes

CONFIGS = {'coco': 'cvt13_maskrcnn_coco.py', 'ade': 'cvt13_upernet_ade20k.py'}
DATA_ROOTS = {'coco': 'coco', 'ade': 'ade/ADEChallengeData2016'}
# (layout, tool, the file or folder under the data root, what is done to it, the line's fault)
CASES = [
    ('coco', 'train', 'annotations/instances_train2017.json', 'truncate',
     'unparsable annotation file: JSONDecodeError: '),
    ('coco', 'test', 'annotations/instances_val2017.json', 'remove',
     'missing annotation file: does not exist'),
    ('ade', 'train', 'annotations/training', 'remove', 'missing folder: does not exist'),
    ('ade', 'test', 'images/validation', 'remove', 'missing folder: does not exist'),
    ('ade', 'train', 'images/training', 'empty',
     "empty data set: ADE20KDataset found no samples (it looks for '*.jpg' images)"),
]


def damage(target, how: str) -> None:
    if how == 'truncate':
        target.write_bytes(target.read_bytes()[:500])
    elif target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    if how == 'empty':
        target.mkdir()


@pytest.mark.parametrize('layout, tool, part, how, fault', CASES,
                         ids=[f'{case[0]}-{case[1]}-{case[3]}-{case[2]}' for case in CASES])
def test_a_broken_data_set_ends_in_one_line_naming_it(layout, tool, part, how, fault, tmp_path):
    data = tmp_path / 'data'
    if layout == 'coco':
        shapes.make_coco(data / 'coco', num_train=2, num_val=2, image_size=64, seed=0)
    else:
        shapes.make_ade(data / 'ade', num_train=2, num_val=2, image_size=64, seed=0)
    config = tmp_path / f'{layout}.py'
    toy_config(load_repo_config(CONFIGS[layout]), data).dump(config)
    target = data / DATA_ROOTS[layout] / part
    damage(target, how)

    command = [sys.executable, TOOLS_DIR / f'{tool}.py', config]
    if tool == 'test':
        checkpoint = tmp_path / 'model.pth'
        torch.save({'state_dict': {}}, checkpoint)  # the data set fails first
        command.append(checkpoint)
    result = subprocess.run([str(arg) for arg in command + ['--work-dir', tmp_path / 'work']],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith(f'error: [{tool}] {target}: {fault}'), result.stderr[-3000:]
    assert last_line.endswith(f' (every file checked: python tools/check_dataset.py {config})')
    assert 'Traceback' not in result.stderr
