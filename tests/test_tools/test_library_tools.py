"""mmdet's own command lines (the scripts its wheel ships in mmdet/.mim/tools) on cvt_mm's
configs as they are: train.py, test.py and analysis_tools/browse_dataset.py on the toy
Mask R-CNN (configs/toy/, which inherits configs/cvt13_maskrcnn_coco.py), misc/print_config.py
on the real config, and analysis_tools/analyze_logs.py plot_curve (the `plot` extra's
seaborn) on a training log, as docs/library_tools.md runs them. Each in a child process in
tmp_path, the checkout's cvt_mm first on the path."""
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import mmdet
import pytest
from helpers import CONFIG_DIR, REPO_ROOT

from cvt_mm.toy import shapes

MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'


def run_tool(script: str, *args, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, str(MMDET_TOOLS / script), *map(str, args)],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def png_size(path: Path):
    header = path.read_bytes()[:24]
    assert header[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return struct.unpack('>II', header[16:24])


def test_mmdet_train_and_test_run_the_toy_config(tmp_path):
    shapes.make_coco(tmp_path / 'data' / 'toy' / 'coco', num_train=2, num_val=2,
                         image_size=128, seed=0)  # where the toy config looks (cwd)
    config = CONFIG_DIR / 'toy' / 'cvt_demo_maskrcnn_toy_scratch.py'
    work_dir = tmp_path / 'work'
    output = run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options',
                      'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1',
                      cwd=tmp_path)
    assert re.search(r'Epoch\(train\) +\[1\]\[1/1\] .*loss: ', output), output[-3000:]
    assert re.search(r'Epoch\(val\) +\[1\]\[1/1\] +coco/bbox_mAP', output), output[-3000:]
    (json_log, ) = work_dir.glob('*/vis_data/[0-9]*.json')
    assert 'loss' in json.loads(json_log.read_text().splitlines()[0])

    output = run_tool('test.py', config, work_dir / 'epoch_1.pth', '--work-dir',
                      tmp_path / 'test', cwd=tmp_path)
    assert re.search(r'Epoch\(test\) +\[1/1\] +coco/bbox_mAP: \S+ +coco/bbox_mAP_50',
                     output), output[-3000:]


def test_mmdet_print_config_and_browse_dataset_take_the_configs(tmp_path):
    output = run_tool('misc/print_config.py', CONFIG_DIR / 'cvt13_maskrcnn_coco.py', cwd=tmp_path)
    assert "type='CvT'" in output and "custom_imports = dict(" in output

    shapes.make_coco(tmp_path / 'data' / 'toy' / 'coco', num_train=2, num_val=2,
                         image_size=128, seed=0)
    run_tool('analysis_tools/browse_dataset.py',
             CONFIG_DIR / 'toy' / 'cvt_demo_maskrcnn_toy_scratch.py', '--not-show',
             '--output-dir', tmp_path / 'browse', cwd=tmp_path)
    drawings = sorted((tmp_path / 'browse').glob('*'))
    assert len(drawings) == 2, drawings


def tiny_training_log(path: Path):
    """Two epochs of four iterations, each followed by a validation, as mmengine's LoggerHook
    writes them (``<work_dir>/<timestamp>/vis_data/<timestamp>.json``)."""
    lines = []
    for epoch in (1, 2):
        for step in range(4 * epoch - 3, 4 * epoch + 1):
            lines.append(dict(lr=1e-4, data_time=0.01, loss=2.0 - 0.2 * step,
                              loss_cls=1.0 - 0.1 * step, time=0.5, epoch=epoch,
                              iter=step, memory=0, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch, 'coco/bbox_mAP_50': 0.2 * epoch,
                      'data_time': 0.01, 'time': 0.2, 'step': epoch})
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))


@pytest.mark.parametrize('keys', [['loss', 'loss_cls'], ['bbox_mAP']], ids=['loss', 'mAP'])
def test_mmdet_analyze_logs_plots_a_training_log(tmp_path, keys):
    log = tmp_path / '20261202_000000.json'
    tiny_training_log(log)
    out = tmp_path / 'curve.png'
    output = run_tool('analysis_tools/analyze_logs.py', 'plot_curve', log, '--keys', *keys,
                      '--out', out, cwd=tmp_path)
    assert f'save curve to: {out}' in output
    assert png_size(out) == (640, 480)  # matplotlib's default figure at 100 dpi
