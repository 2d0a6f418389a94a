"""A preempted run loses nothing: real signals to real tools/train.py processes of the toy
Mask R-CNN (epoch loop, 2 persistent dataloader workers) and the toy UperNet (iteration loop,
2 workers started afresh each pass), one and two processes.

Each signal is sent by the process to itself at a chosen iteration (PreemptionDrillHook, a
real os.kill), so where it lands is known and asserted. Every preempted run must exit with
status 75 after a checkpoint at that iteration, and its resumed run must end with weights
identical (max abs difference 0.0) to those of an uninterrupted run.
"""
import signal

import pytest
from resume_runs import (
    DETECTION,
    SEGMENTATION,
    add_hook,
    classification_config,
    detection_config,
    dump,
    last_checkpoint,
    load,
    make_data,
    max_difference,
    segmentation_config,
    train,
)

from cvt_mm.engine import PREEMPTED_EXIT_STATUS
from cvt_mm.engine.preemption import parse_signals

CLASSIFICATION = dict(batch_size=4, max_epochs=2)  # 10 images: 3 iterations an epoch


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('data'), num_train=6)


@pytest.fixture(scope='module')
def uninterrupted(data_root, tmp_path_factory):
    """The final checkpoints of uninterrupted runs, by name."""
    root = tmp_path_factory.mktemp('uninterrupted')
    runs = {}
    for name, cfg, final in (
            ('detection', detection_config(data_root, **DETECTION), 'epoch_2.pth'),
            ('segmentation', segmentation_config(data_root, **SEGMENTATION), 'iter_6.pth'),
            ('classification', classification_config(data_root, **CLASSIFICATION),
             'epoch_2.pth')):
        train(dump(cfg, root / f'{name}.py'), root / name)
        runs[name] = root / name / final
    return runs


def preempt_and_resume(cfg, tmp_path, iteration, *, processes=1, final, **drill):
    """Run with a drill signal at ``iteration``, assert the stop, resume; returns the work
    directory."""
    config = dump(add_hook(cfg, type='PreemptionDrillHook', iteration=iteration, **drill),
                  tmp_path / 'preempted.py')
    work_dir = tmp_path / 'work'
    output = train(config, work_dir, processes=processes, expect=PREEMPTED_EXIT_STATUS
                   if processes == 1 else 1)
    checkpoint = work_dir / f'iter_{iteration}.pth'
    assert last_checkpoint(work_dir) == checkpoint.name
    assert load(checkpoint)['meta']['iter'] == iteration
    assert not (work_dir / final).exists()
    # Every rank's own word (tools/train.py prints it before the exit barrier); torchrun's
    # failure report lists only the ranks it saw end before it stopped the others.
    assert output.count(f'stopped after iteration {iteration} (') == processes, output[-5000:]
    resumed = cfg.copy()
    train(dump(resumed, tmp_path / 'resumed.py'), work_dir, '--resume', processes=processes)
    return work_dir


@pytest.mark.parametrize('signal_name, iteration', [('SIGTERM', 5), ('SIGUSR1', 2)])
def test_epoch_loop_stops_on_the_signal_and_resumes_inside_the_epoch(
        data_root, uninterrupted, tmp_path, signal_name, iteration):
    cfg = detection_config(data_root, **DETECTION)
    work_dir = preempt_and_resume(cfg, tmp_path, iteration, signal=signal_name,
                                  final='epoch_2.pth')
    assert load(work_dir / f'iter_{iteration}.pth')['meta']['epoch'] == (iteration - 1) // 3
    assert max_difference(uninterrupted['detection'], work_dir / 'epoch_2.pth') == 0.0


def test_classifier_stops_on_the_signal_and_resumes_inside_the_epoch(data_root, uninterrupted,
                                                                    tmp_path):
    cfg = classification_config(data_root, **CLASSIFICATION)
    work_dir = preempt_and_resume(cfg, tmp_path, 5, signal='SIGUSR1', final='epoch_2.pth')
    assert max_difference(uninterrupted['classification'], work_dir / 'epoch_2.pth') == 0.0


def test_iteration_loop_stops_on_the_signal_and_resumes(data_root, uninterrupted, tmp_path):
    cfg = segmentation_config(data_root, **SEGMENTATION)
    work_dir = preempt_and_resume(cfg, tmp_path, 3, signal='SIGTERM', final='iter_6.pth')
    assert max_difference(uninterrupted['segmentation'], work_dir / 'iter_6.pth') == 0.0


def test_a_second_signal_exits_at_once(data_root, uninterrupted, tmp_path):
    cfg = segmentation_config(data_root, **SEGMENTATION)
    config = dump(add_hook(cfg.copy(), type='PreemptionDrillHook', iteration=3, times=2),
                  tmp_path / 'twice.py')
    work_dir = tmp_path / 'work'
    output = train(config, work_dir, expect=128 + signal.SIGTERM)
    assert 'second preemption signal (SIGTERM)' in output
    assert not (work_dir / 'iter_3.pth').exists()
    assert last_checkpoint(work_dir) == 'iter_2.pth'  # the last complete one
    train(dump(cfg, tmp_path / 'resumed.py'), work_dir, '--resume')
    assert max_difference(uninterrupted['segmentation'], work_dir / 'iter_6.pth') == 0.0


def test_a_signal_in_the_last_iteration_lets_the_run_finish(data_root, uninterrupted, tmp_path):
    cfg = add_hook(segmentation_config(data_root, **SEGMENTATION), type='PreemptionDrillHook',
                   iteration=SEGMENTATION['max_iters'])
    work_dir = tmp_path / 'work'
    train(dump(cfg, tmp_path / 'last.py'), work_dir, expect=0)
    assert last_checkpoint(work_dir) == 'iter_6.pth'
    assert max_difference(uninterrupted['segmentation'], work_dir / 'iter_6.pth') == 0.0


def test_resume_without_a_checkpoint_starts_from_the_beginning(data_root, uninterrupted,
                                                              tmp_path):
    cfg = segmentation_config(data_root, **SEGMENTATION)
    work_dir = tmp_path / 'work'
    output = train(dump(cfg, tmp_path / 'fresh.py'), work_dir, '--resume')
    assert 'training starts from the beginning' in output
    assert max_difference(uninterrupted['segmentation'], work_dir / 'iter_6.pth') == 0.0


def test_signal_to_one_of_two_processes_stops_both_at_the_same_iteration(data_root,
                                                                        tmp_path):
    cfg = segmentation_config(data_root, **SEGMENTATION)
    reference = tmp_path / 'reference'
    train(dump(cfg, tmp_path / 'reference.py'), reference, processes=2)
    work_dir = preempt_and_resume(cfg, tmp_path, 3, processes=2, rank=1, signal='SIGUSR1',
                                  final='iter_6.pth')
    assert max_difference(reference / 'iter_6.pth', work_dir / 'iter_6.pth') == 0.0


def test_signal_names():
    assert parse_signals('TERM,usr1') == (signal.SIGTERM, signal.SIGUSR1)
    assert parse_signals(['SIGINT', 15]) == (signal.SIGINT, signal.SIGTERM)
    assert parse_signals('none') == ()
    with pytest.raises(ValueError, match='SIGKILL cannot be caught'):
        parse_signals('KILL')
    with pytest.raises(ValueError, match='no such signal'):
        parse_signals('TREM')
