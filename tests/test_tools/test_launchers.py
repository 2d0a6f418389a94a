"""Training past one machine: tools/dist_train.sh as two nodes on this machine, and
tools/slurm_train.sh through a real Slurm (the tests marked ``slurm``: `make slurm` starts a
local one, CI always does), both with gloo on CPU."""
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import TOOLS_DIR, free_port, load_repo_config, make_toy_datasets, toy_config
from slurm_gate import slurm_queue

from cvt_mm.engine import slurm_environment


@pytest.fixture(scope='module')
def detection_config(tmp_path_factory):
    root = tmp_path_factory.mktemp('launchers')
    cfg = toy_config(load_repo_config('cvt13_maskrcnn_coco.py'), make_toy_datasets(root))
    # Two toy images, one per process: one iteration an epoch; validation gathers both ranks.
    cfg.train_dataloader.batch_size = 1
    cfg.train_cfg.update(max_epochs=2, val_interval=2)
    path = root / 'detection.py'
    cfg.dump(path)
    return path


def assert_clean_two_process_run(output: str, returncode: int, work_dir):
    assert returncode == 0, output[-4000:]
    assert 'Distributed training: True' in output
    assert 'GPU number: 2' in output  # mmengine's name for the world size
    assert re.search(r'Epoch\(train\) +\[2\]\[1/1\]', output), output[-3000:]
    assert re.search(r'Epoch\(val\) +\[2\]\[1/1\] +coco/bbox_mAP', output), output[-3000:]
    assert (work_dir / 'epoch_2.pth').is_file()
    # The depthwise and patch-embedding conv weights keep their gradients' layout.
    assert 'Grad strides do not match bucket view strides' not in output


def test_two_nodes_on_one_machine(detection_config, tmp_path):
    """NNODES=2: two dist_train.sh invocations (node ranks 0 and 1, one process each)
    rendezvous on 127.0.0.1; rank 0 writes the checkpoint."""
    work_dir = tmp_path / 'work'
    port = str(free_port())
    nodes = []
    for rank in (0, 1):
        env = dict(os.environ, NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                   PORT=port, PYTHON=sys.executable, OMP_NUM_THREADS='1')
        nodes.append(subprocess.Popen(
            ['bash', str(TOOLS_DIR / 'dist_train.sh'), str(detection_config), '1',
             '--work-dir', str(work_dir)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert_clean_two_process_run(outputs[0], nodes[0].returncode, work_dir)
    assert nodes[1].returncode == 0, outputs[1][-4000:]
    state = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert state['meta']['epoch'] == 2


def test_several_nodes_need_an_agreed_port(detection_config):
    env = {key: value for key, value in os.environ.items() if key != 'PORT'}
    result = subprocess.run(['bash', str(TOOLS_DIR / 'dist_train.sh'), str(detection_config),
                             '1'], env=dict(env, NNODES='2'), capture_output=True, text=True)
    assert result.returncode == 2 and 'set PORT' in result.stderr


@pytest.mark.slurm
def test_slurm_train_runs_two_tasks_under_real_slurm(detection_config, tmp_path):
    work_dir = tmp_path / 'work'
    env = dict(os.environ, GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', GRES='',
               PYTHON=sys.executable, OMP_NUM_THREADS='1')
    try:
        result = subprocess.run(
            ['bash', str(TOOLS_DIR / 'slurm_train.sh'), 'local', 'cvt_mm_test',
             str(detection_config), str(work_dir)], env=env, capture_output=True, text=True,
            timeout=600)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f'{error}\n{slurm_queue()}', pytrace=False)
    assert_clean_two_process_run(result.stdout + result.stderr, result.returncode, work_dir)


@pytest.mark.slurm
def test_slurm_environment_maps_srun_variables():
    environ = dict(SLURM_PROCID='3', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_JOB_ID='4242',
                   SLURM_NODELIST='gpu[07-08]')
    env = slurm_environment(environ)  # Slurm's scontrol expands the node list
    assert env == dict(RANK='3', WORLD_SIZE='8', LOCAL_RANK='1', MASTER_ADDR='gpu07',
                       MASTER_PORT=str(20000 + 4242))


def test_slurm_environment_outside_a_job_step_is_refused():
    with pytest.raises(RuntimeError, match='SLURM_PROCID'):
        slurm_environment({})
