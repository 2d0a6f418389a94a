"""A restarted process (torchrun's TORCHELASTIC_RESTART_COUNT, Slurm's SLURM_RESTART_COUNT)
resumes from the newest checkpoint in its work directory; a first start does what --resume says.
The restarts themselves: tests/test_tools/test_preemption_launchers.py."""
import os
import re
import signal
import subprocess
import sys

from helpers import REPO_ROOT, free_port
from mmengine.config import Config

from cvt_mm.engine import apply_resume
from cvt_mm.engine.elastic import restart_count, resume_after_restart


def test_restart_count_from_torchrun_or_slurm():
    assert restart_count({}) == 0
    assert restart_count({'TORCHELASTIC_RESTART_COUNT': '0', 'SLURM_RESTART_COUNT': ''}) == 0
    assert restart_count({'TORCHELASTIC_RESTART_COUNT': '2'}) == 2
    assert restart_count({'SLURM_RESTART_COUNT': '1'}) == 1


def test_a_restart_resumes_from_the_work_dir(tmp_path):
    first_start = {'TORCHELASTIC_RESTART_COUNT': '0'}
    restart = {'TORCHELASTIC_RESTART_COUNT': '1'}
    # Nothing saved yet: a restart starts as the first start did.
    assert resume_after_restart(None, None, restart) is None
    assert resume_after_restart('other/epoch_3.pth', None, restart) == 'other/epoch_3.pth'
    for resume in (None, 'auto', 'other/epoch_3.pth'):
        assert resume_after_restart(resume, 'work/epoch_1.pth', first_start) == resume
        assert resume_after_restart(resume, 'work/epoch_1.pth', restart) == 'auto'
    assert resume_after_restart(None, 'work/epoch_1.pth', {'SLURM_RESTART_COUNT': '1'}) == 'auto'


def test_apply_resume_at_a_restart(tmp_path, monkeypatch):
    cfg = Config(dict(work_dir=str(tmp_path)))
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    apply_resume(cfg, None)
    assert not cfg.get('resume')  # nothing to resume from
    (tmp_path / 'epoch_1.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    apply_resume(cfg, 'other/epoch_3.pth')
    assert cfg.resume and cfg.load_from == str(tmp_path / 'epoch_1.pth')


def test_a_restarted_group_meets_in_keys_of_its_own(tmp_path):
    """Rank 0 dies right after the group formed, twice, and joins each restarted group last:
    the restarted rank 1 must not connect to the address the dead rank 0 published."""
    port = free_port()
    worker = REPO_ROOT / 'tests' / 'launcher_faults.py'
    run = subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node=2',
         f'--master-port={port}', '--max-restarts=2', str(worker), '2'],
        env=dict(os.environ, OMP_NUM_THREADS='1',
                 PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get('PYTHONPATH', '')])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=180)  # a hung group waits 30 min
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, stderr[-4000:]
    # The two ranks print to one pipe, their lines may interleave.
    assert sorted(re.findall(r'attempt \d+: rank \d+ summed [\d.]+', stdout)) == [
        'attempt 2: rank 0 summed 2.0', 'attempt 2: rank 1 summed 2.0'], stdout + stderr[-4000:]
