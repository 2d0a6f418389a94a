"""Runs that outlive their processes, each ending with the weights of an uninterrupted run:
tools/dist_train.sh, whose torchrun restarts a worker group after a worker is killed (on one
node, and on each of two), and tools/slurm_submit.sh, whose job is warned or preempted by the
real local Slurm, requeues itself and resumes. The faults come at a known iteration
(tests/launcher_faults.py)."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import resume_runs
from helpers import REPO_ROOT, TOOLS_DIR, free_port
from resume_runs import max_difference
from slurm_gate import slurm_queue

from cvt_mm.toy import shapes

TIMEOUT = 600  # seconds; a test on 2 idle cores takes well under 90


def launcher_env(**variables) -> dict:
    """The environment of the launched runs: this interpreter, this checkout and the fault hooks
    (tests/) on the path, one thread per process."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), str(REPO_ROOT / 'tests'),
                                         os.environ.get('PYTHONPATH')]))
    return dict(os.environ, PYTHON=sys.executable, PYTHONPATH=path, OMP_NUM_THREADS='1',
                **variables)


def detection_config(root: Path, num_train: int, max_epochs: int):
    """The toy Mask R-CNN (resume_runs) on ``num_train`` images, one per process and
    iteration, a checkpoint every epoch, seeded, without validation (only the weights are
    compared)."""
    shapes.make_coco(root / 'coco', num_train=num_train, num_val=1,
                         image_size=resume_runs.IMAGE_SIZE, seed=0)
    cfg = resume_runs.detection_config(root, batch_size=1, max_epochs=max_epochs,
                                       num_workers=0)
    cfg.randomness = dict(seed=0, deterministic=True)
    return cfg


def dump_config(cfg, path: Path, fault: dict = None) -> Path:
    cfg = cfg.copy()
    if fault is not None:
        cfg.custom_imports = dict(imports=['launcher_faults'], allow_failed_imports=False)
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [fault]
    cfg.dump(path)
    return path


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    """Poll ``condition`` every 0.2 s until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


# torchrun -------------------------------------------------------------------------------------


def kill_at_marker(command: list, marker: Path, env: dict) -> tuple:
    """Run ``command``; when a StallForKillHook writes ``marker``, SIGKILL the process it names.
    Returns the exit status and the output."""
    [(returncode, output)] = kill_at_marker_on_nodes([(command, env)], marker)
    return returncode, output


def start_nodes(nodes: list) -> list:
    """Start each node's ``(command, env)``, each in a session of its own (its process group
    can be killed whole), output and errors in one pipe."""
    return [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True) for command, env in nodes]


def run_nodes(nodes: list) -> list:
    """Run each node's ``(command, env)`` at once; returns each node's exit status and
    output."""
    runs = start_nodes(nodes)
    outputs = [run.communicate(timeout=TIMEOUT)[0] for run in runs]
    return [(run.returncode, output) for run, output in zip(runs, outputs)]


def kill_at_marker_on_nodes(nodes: list, marker: Path) -> list:
    """Run each node's ``(command, env)`` at once; when a StallForKillHook writes ``marker``,
    SIGKILL the process it names. Returns each node's exit status and output."""
    runs = start_nodes(nodes)
    try:
        wait_for(lambda: marker.exists() or any(run.poll() is not None for run in runs),
                 f'{marker.name}')
        for run in runs:
            assert run.poll() is None, run.communicate()[0][-4000:]
        os.kill(int(marker.read_text()), signal.SIGKILL)
        outputs = [run.communicate(timeout=TIMEOUT)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    return [(run.returncode, output) for run, output in zip(runs, outputs)]


def two_nodes(config: Path, work_dir: Path, **variables) -> list:
    """The ``(command, env)`` of each of two dist_train.sh invocations that make one run of two
    nodes, one process each (NNODES=2, NODE_RANK 0 and 1), meeting on this machine."""
    port = str(free_port())
    return [(['bash', str(TOOLS_DIR / 'dist_train.sh'), str(config), '1', '--work-dir',
              str(work_dir)],
             launcher_env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1', PORT=port,
                          **variables)) for rank in (0, 1)]


def test_torchrun_restarts_a_killed_worker_and_the_run_resumes(tmp_path):
    """Two processes, three epochs of one iteration; rank 0 is SIGKILLed at the start of
    iteration 1, after epoch_1.pth. torchrun (MAX_RESTARTS) restarts both, they resume from
    epoch_1.pth by themselves and end with the weights of an uninterrupted run."""
    cfg = detection_config(tmp_path, num_train=2, max_epochs=3)
    uninterrupted = dump_config(cfg, tmp_path / 'uninterrupted.py')
    marker = tmp_path / 'rank0_stalled'
    faulty = dump_config(cfg, tmp_path / 'faulty.py', fault=dict(
        type='StallForKillHook', iteration=1, rank=0, marker=str(marker)))
    dist_train = ['bash', str(TOOLS_DIR / 'dist_train.sh')]

    reference = subprocess.run(
        dist_train + [str(uninterrupted), '2', '--work-dir', str(tmp_path / 'reference')],
        env=launcher_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert reference.returncode == 0, reference.stderr[-4000:]

    work_dir = tmp_path / 'restarted'
    # LOGLEVEL=INFO: torchrun logs its restarts.
    returncode, output = kill_at_marker(
        dist_train + [str(faulty), '2', '--work-dir', str(work_dir)], marker,
        launcher_env(MAX_RESTARTS='1', LOGLEVEL='INFO'))
    assert returncode == 0, output[-4000:]
    # torchrun's record of the restart, then the restarted workers' (TORCHELASTIC_RESTART_COUNT).
    assert 'Worker group FAILED. 1/1 attempts left; will restart worker group' in output
    assert output.count('restart 1 of this run: resuming from the newest checkpoint') == 2
    assert output.count('resumed epoch: 1, iter: 1') == 1, output[-4000:]  # rank 0 logs it
    assert max_difference(work_dir / 'epoch_3.pth',
                          tmp_path / 'reference' / 'epoch_3.pth') == 0.0


@pytest.fixture(scope='module')
def two_node_toy(tmp_path_factory) -> tuple:
    """The toy of the two-node tests (two images, three one-iteration epochs) and the final
    checkpoint of an uninterrupted two-node run of it."""
    root = tmp_path_factory.mktemp('two_nodes')
    cfg = detection_config(root, num_train=2, max_epochs=3)
    uninterrupted = dump_config(cfg, root / 'uninterrupted.py')
    for returncode, output in run_nodes(two_nodes(uninterrupted, root / 'reference')):
        assert returncode == 0, output[-4000:]
    return cfg, root / 'reference' / 'epoch_3.pth'


def test_torchrun_on_two_nodes_restarts_both_after_a_killed_worker(tmp_path, two_node_toy):
    """Two nodes on this machine, as on two machines: rank 1, node 1's only process, is
    SIGKILLed at the start of iteration 1. Node 0's process loses its peer and fails too, each
    node's torchrun restarts its group, the two meet again, resume from epoch_1.pth (a shared
    work directory) and end with the weights of an uninterrupted two-node run."""
    cfg, reference = two_node_toy
    marker = tmp_path / 'rank1_stalled'
    faulty = dump_config(cfg, tmp_path / 'faulty.py', fault=dict(
        type='StallForKillHook', iteration=1, rank=1, marker=str(marker)))

    work_dir = tmp_path / 'restarted'
    nodes = kill_at_marker_on_nodes(
        two_nodes(faulty, work_dir, MAX_RESTARTS='1', LOGLEVEL='INFO'), marker)
    for node_rank, (returncode, output) in enumerate(nodes):
        assert returncode == 0, (node_rank, output[-4000:])
        assert 'Worker group FAILED. 1/1 attempts left; will restart worker group' in output, \
            (node_rank, output[-4000:])
        assert 'restart 1 of this run: resuming from the newest checkpoint' in output
    # Node 0's process failed of its peer's death, not of a kill of its own (a negative status):
    # gloo's error (exit status 1) says "Connection closed by peer" or "Connection reset by
    # peer", whichever way the socket broke.
    assert 'failed (exitcode: 1) local_rank: 0' in nodes[0][1], nodes[0][1][-4000:]
    assert 'failed (exitcode: -9)' in nodes[1][1]
    assert 'resumed epoch: 1, iter: 1' in nodes[0][1]  # rank 0 logs it
    assert max_difference(work_dir / 'epoch_3.pth', reference) == 0.0


def test_two_nodes_stop_together_on_a_signal_to_one_and_resume(tmp_path, two_node_toy):
    """Two nodes on this machine: node 1's process gets SIGTERM as iteration 2 of 3 starts
    (PreemptionDrillHook). Both processes stop after it and save it, each node's torchrun
    ends (without restarts: MAX_RESTARTS=0, as for a run that Slurm or a user stops), and the
    same commands with --resume finish with the weights of an uninterrupted two-node run."""
    cfg, reference = two_node_toy
    uninterrupted = dump_config(cfg, tmp_path / 'uninterrupted.py')
    signalled = dump_config(cfg, tmp_path / 'signalled.py', fault=dict(
        type='PreemptionDrillHook', iteration=2, rank=1, signal='SIGTERM'))

    work_dir = tmp_path / 'stopped'
    for node_rank, (returncode, output) in enumerate(
            run_nodes(two_nodes(signalled, work_dir, MAX_RESTARTS='0'))):
        assert returncode != 0, (node_rank, output[-4000:])  # torchrun reports the 75 as a failure
        assert 'SIGTERM: stopped after iteration 2 (' in output, (node_rank, output[-4000:])
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    assert not (work_dir / 'epoch_3.pth').exists()
    nodes = run_nodes([(command + ['--resume'], env)
                       for command, env in two_nodes(uninterrupted, work_dir, MAX_RESTARTS='0')])
    for returncode, output in nodes:
        assert returncode == 0, output[-4000:]
    assert 'resumed epoch: 1, iter: 2' in nodes[0][1], nodes[0][1][-4000:]
    assert max_difference(work_dir / 'epoch_3.pth', reference) == 0.0


def test_torchrun_without_restarts_ends_at_the_first_death(tmp_path):
    cfg = detection_config(tmp_path, num_train=2, max_epochs=2)
    marker = tmp_path / 'rank0_stalled'
    faulty = dump_config(cfg, tmp_path / 'faulty.py', fault=dict(
        type='StallForKillHook', iteration=1, rank=0, marker=str(marker)))
    returncode, output = kill_at_marker(
        ['bash', str(TOOLS_DIR / 'dist_train.sh'), str(faulty), '2', '--work-dir',
         str(tmp_path / 'work')], marker, launcher_env(MAX_RESTARTS='0'))
    assert returncode != 0
    assert 'restart 1 of this run' not in output


# Slurm ----------------------------------------------------------------------------------------


def job_info(job_id: str) -> dict:
    """``scontrol show job``'s fields (kept for MinJobAge, 300 s by default, after the end)."""
    shown = subprocess.run(['scontrol', 'show', 'job', '-o', job_id], capture_output=True,
                           text=True, check=True).stdout
    return dict(field.split('=', 1) for field in shown.split() if '=' in field)


ENDED_STATES = {'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY',
                'BOOT_FAIL', 'DEADLINE', 'PREEMPTED'}


def wait_for_job(job_id: str, condition, what: str) -> dict:
    """``wait_for`` a job's ``scontrol show job`` fields to meet ``condition``; on a time-out
    the message carries the queue and the node's state (another job holding the node?)."""
    try:
        return wait_for(lambda: condition(job_info(job_id)), what)
    except AssertionError as error:
        raise AssertionError(f'{error}; job {job_id}: {job_info(job_id)}\n{slurm_queue()}') \
            from None


def wait_for_end(job_id: str, restarts: int) -> dict:
    def ended(info):
        return info if (info['JobState'] in ENDED_STATES
                        and int(info['Restarts']) == restarts) else None
    return wait_for_job(job_id, ended, f'job {job_id} to end after {restarts} restart(s)')


class SlurmJobs:
    """Submits the tests' jobs: ``train`` (tools/slurm_submit.sh with CPU tasks, on the
    default partition ``local``) and ``urgent`` (a stand-in job on partition ``urgent``, whose
    higher PriorityTier preempts jobs of ``local``: tools/ci/start_local_slurm.sh). Each returns
    the job id."""

    def __init__(self):
        self.job_ids = []

    def _submitted(self, stdout: str) -> str:
        job_id = re.fullmatch(r'Submitted batch job (\d+)\n', stdout).group(1)
        self.job_ids.append(job_id)
        return job_id

    def train(self, config, work_dir, *train_args, tasks=2) -> str:
        env = launcher_env(GPUS=str(tasks), GPUS_PER_NODE=str(tasks), CPUS_PER_TASK='1',
                           GRES='', SIGNAL_LEAD='60')
        result = subprocess.run(['bash', str(TOOLS_DIR / 'slurm_submit.sh'), 'local',
                                 'cvt_mm_requeue_test', str(config), str(work_dir), *train_args],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return self._submitted(result.stdout)

    def urgent(self, command: str, output: Path) -> str:
        result = subprocess.run(['sbatch', '--partition=urgent', '--ntasks=1',
                                 f'--output={output}', f'--wrap={command}'],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return self._submitted(result.stdout)

    def cancel_all(self) -> None:
        for job_id in self.job_ids:
            subprocess.run(['scancel', job_id], capture_output=True)


@pytest.fixture
def jobs():
    """Jobs still queued or running when the test ends are cancelled."""
    jobs = SlurmJobs()
    yield jobs
    jobs.cancel_all()


class UninterruptedReference:
    """The toy of the requeue tests (two tasks, 2 persistent dataloader workers each, one epoch
    of three iterations) and, computed on first use by a test that holds the Slurm node, the
    weights of an uninterrupted job of it, which each test compares its interrupted job with."""

    def __init__(self, root: Path):
        self.root = root
        self.cfg = detection_config(root, num_train=6, max_epochs=1)
        self.cfg.train_dataloader.update(num_workers=2, persistent_workers=True)
        self.checkpoint = None

    def weights(self, jobs: SlurmJobs) -> Path:
        if self.checkpoint is None:
            work_dir = self.root / 'reference'
            config = dump_config(self.cfg, self.root / 'uninterrupted.py')
            info = wait_for_end(jobs.train(config, work_dir), restarts=0)
            log = (work_dir / f'slurm-{info["JobId"]}.out').read_text()
            assert info['JobState'] == 'COMPLETED', log[-4000:]
            assert 'training finished' in log and 'requeueing' not in log
            self.checkpoint = work_dir / 'epoch_1.pth'
        return self.checkpoint


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    return UninterruptedReference(tmp_path_factory.mktemp('requeue_toy'))


def submit_stopping_at_iteration_1(tmp_path, uninterrupted, jobs, signal_name: str) -> tuple:
    """Submits the toy whose rank 0 waits for ``signal_name`` before iteration 1 (rank 1 trains
    on to the same point and waits in the all-reduce); returns the job id and its log once rank
    0 waits."""
    marker = tmp_path / 'rank0_at_iteration_1'
    faulty = dump_config(uninterrupted.cfg, tmp_path / 'faulty.py', fault=dict(
        type='WaitForSignalHook', iteration=1, rank=0, marker=str(marker),
        signal_name=signal_name))
    job_id = jobs.train(faulty, tmp_path / 'requeued')
    log = tmp_path / 'requeued' / f'slurm-{job_id}.out'
    wait_for_job(job_id, lambda info: marker.exists() or info['JobState'] in ENDED_STATES,
                 'rank 0 at iteration 1')
    assert marker.exists(), log.read_text()[-4000:]
    return job_id, log


def wait_for_requeue(job_id: str, log: Path) -> None:
    def requeued_or_ended(info):
        return info if ((info['JobState'] == 'PENDING' and info['Restarts'] == '1')
                        or info['JobState'] in ENDED_STATES) else None
    info = wait_for_job(job_id, requeued_or_ended, 'the job requeued')
    assert info['JobState'] == 'PENDING', (info, log.read_text()[-4000:])


def start_soon(job_id: str) -> None:
    # Slurm makes a requeued job eligible again 121 s later (EligibleTime). Started in the
    # second its previous run ended, slurmd refuses it ("Job credential revoked", the job
    # fails): start it 2 s from now.
    subprocess.run(['scontrol', 'update', f'JobId={job_id}', 'StartTime=now+2'], check=True)


def assert_resumed_and_finished(job_id: str, log: Path, signal_name: str, stop_log: str):
    """The job ran twice, stopped mid-epoch on ``signal_name`` in its first start (``stop_log``
    names why in the batch script's words), resumed there and finished."""
    info = wait_for_end(job_id, restarts=1)
    output = log.read_text()
    assert info['JobState'] == 'COMPLETED', (info, output[-4000:])
    assert re.search(rf'start 1 on .*{stop_log}.*requeueing.*start 2 on .*training finished',
                     output, re.DOTALL), output[-4000:]
    # Both tasks, mid-epoch.
    assert output.count(f'{signal_name}: stopped after iteration 2') == 2, output[-4000:]
    assert output.count('restart 1 of this run: resuming') == 2
    assert re.search(r'resumed epoch: 0, iter: 2', output), output[-4000:]


@pytest.mark.slurm
def test_slurm_job_warned_mid_epoch_requeues_itself_and_ends_as_uninterrupted(
        tmp_path, uninterrupted, jobs):
    """At iteration 1 the batch shell gets Slurm's warning (what --signal=B:USR1@SIGNAL_LEAD
    sends ahead of the time limit); the tasks checkpoint and stop, the job requeues itself,
    starts again, resumes, finishes, and does not requeue again."""
    reference = uninterrupted.weights(jobs)
    job_id, log = submit_stopping_at_iteration_1(tmp_path, uninterrupted, jobs, 'SIGUSR1')
    subprocess.run(['scancel', '--batch', '--signal=USR1', job_id], check=True)
    wait_for_requeue(job_id, log)
    start_soon(job_id)
    assert_resumed_and_finished(job_id, log, 'SIGUSR1', 'warning signal')
    assert max_difference(tmp_path / 'requeued' / 'epoch_1.pth', reference) == 0.0


@pytest.mark.slurm(partitions=['urgent'])
def test_slurm_job_preempted_mid_epoch_requeues_itself_and_ends_as_uninterrupted(
        tmp_path, uninterrupted, jobs):
    """At iteration 1 a job of the higher-tier partition ``urgent`` needs a CPU: Slurm preempts
    the training job (PreemptMode=REQUEUE), which sends SIGTERM to its tasks only; they
    checkpoint and exit within the partition's GraceTime, the batch script sees the job's
    PreemptTime and requeues it (Slurm does not requeue a job that ends by itself), the urgent
    job runs, and the training job starts again, resumes and finishes."""
    reference = uninterrupted.weights(jobs)
    job_id, log = submit_stopping_at_iteration_1(tmp_path, uninterrupted, jobs, 'SIGTERM')
    urgent_output = tmp_path / 'urgent.out'
    urgent = jobs.urgent('echo urgent job ran', urgent_output)
    wait_for_requeue(job_id, log)
    wait_for_job(urgent, lambda info: info['JobState'] in ENDED_STATES, 'the urgent job')
    assert urgent_output.read_text() == 'urgent job ran\n'
    start_soon(job_id)
    assert_resumed_and_finished(job_id, log, 'SIGTERM', 'preempted: the tasks checkpointed')
    assert max_difference(tmp_path / 'requeued' / 'epoch_1.pth', reference) == 0.0


@pytest.mark.slurm
def test_slurm_job_that_fails_is_not_requeued(tmp_path, jobs):
    cfg = detection_config(tmp_path, num_train=2, max_epochs=1)
    config = dump_config(cfg, tmp_path / 'config.py')
    work_dir = tmp_path / 'work'
    job_id = jobs.train(config, work_dir, '--cfg-options',
                        f'train_dataloader.dataset.ann_file={tmp_path}/missing.json', tasks=1)
    info = wait_for_end(job_id, restarts=0)
    output = (work_dir / f'slurm-{job_id}.out').read_text()
    assert info['JobState'] == 'FAILED' and info['ExitCode'] == '1:0', output[-4000:]
    assert 'training failed with exit status 1; not requeued' in output
    assert 'missing.json' in output
