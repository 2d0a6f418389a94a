"""tools/transfer_benchmark.py --toy: the transfer configs fine-tune a checkpoint end to end on the
toy shape set and the table comes out as markdown and JSON."""
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import TOOLS_DIR

from cvt_mm.apis import classifier_cfg
from cvt_mm.engine import register_task_modules
from cvt_mm.testing import FAST_TEST_ARCH
from cvt_mm.transfer import PAPER_TOP1, TOY_STEPS, TRANSFER_CONFIGS

CHANCE = 100 / 5  # five toy classes


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """A tiny CvT classifier checkpoint (10 classes, unlike the toy set's 5: the head is
    replaced, only the backbone loads)."""
    register_task_modules('mmpretrain')
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(classifier_cfg(FAST_TEST_ARCH, 10))
    model.init_weights()
    path = tmp_path_factory.mktemp('transfer') / 'tiny.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def test_toy_benchmark_runs_end_to_end(tiny_checkpoint, tmp_path):
    work_dir = tmp_path / 'bench'
    result = subprocess.run(
        [sys.executable, str(TOOLS_DIR / 'transfer_benchmark.py'), str(tiny_checkpoint),
         '--toy', '--datasets', 'cifar10', '--work-dir', str(work_dir)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]

    table = json.loads((work_dir / 'transfer_benchmark.json').read_text())
    assert table['toy'] is True and table['checkpoint'] == str(tiny_checkpoint)
    (row, ) = table['results']
    assert row['dataset'] == 'cifar10' and row['config'] == 'configs/transfer/cvt13_cifar10.py'
    assert row['steps'] == TOY_STEPS and row['seconds'] > 0
    assert row['paper_top1'] == PAPER_TOP1['cifar10']
    assert row['top1'] > CHANCE, row  # the fine-tuning learnt something
    markdown = (work_dir / 'transfer_benchmark.md').read_text()
    assert f"| cifar10 | {row['top1']:.2f} | 98.83 | {TOY_STEPS} |" in markdown
    assert markdown.strip() in result.stdout


def test_every_transfer_config_has_a_paper_number():
    assert set(PAPER_TOP1) == set(TRANSFER_CONFIGS)
    for relative in TRANSFER_CONFIGS.values():
        assert (TOOLS_DIR.parent / 'configs' / relative).is_file()
