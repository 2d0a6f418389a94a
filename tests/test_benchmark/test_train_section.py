"""The train section's runs: the backbone's and the classifier's training steps, every run in a
fresh process per round, the runs taking turns."""
from benchmarking.sections import CLS_TRAIN_RUNS, TRAIN_RUNS, measure_train
from benchmarking.suite import settings


def test_backbone_and_classifier_runs_take_turns_round_by_round():
    spawned = []

    class RecordingSuite:
        cfg = dict(settings(quick=True), train_rounds=2)

        def spawn(self, kind, **job):
            spawned.append((kind, job.get('with_cp'), job.get('cpu_kernels'), job.get('impl')))
            return None  # as a failed worker: no tables

    assert measure_train(RecordingSuite())['tables'] == []
    backbone_round = [('train', with_cp, kernels, None) for with_cp, kernels in TRAIN_RUNS.values()]
    classifier_round = [('cls_train', None, None, impl) for impl in CLS_TRAIN_RUNS]
    assert spawned == backbone_round * 2 + classifier_round * 2
