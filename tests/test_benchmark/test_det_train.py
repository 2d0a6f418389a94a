"""The det-train section (one Mask R-CNN training step per image, each model as its config
builds it) on the quick settings, its workers run in this process; and its device table where
mmcv has no compiled ops."""
from types import SimpleNamespace

import pytest
from in_process import in_process_suite

from cvt_mm.benchmark.runner import settings
from cvt_mm.benchmark.sections import (
    DET_TRAIN_PROFILED,
    DET_TRAIN_RUNS,
    device_det_train_table,
    measure_det_train,
)


@pytest.fixture(scope='module')
def det_train():
    suite = in_process_suite(settings(quick=True))
    return suite, measure_det_train(suite)


def test_every_model_trains_one_step_with_its_own_optimizer(det_train):
    suite, section = det_train
    results = section['raw']
    assert list(results) == list(DET_TRAIN_RUNS)
    for label, r in results.items():
        assert len(r['times']) == 1 and r['times'][0] > 0, label
        assert r['peak_rss_mb'] >= r['rss_built_mb'] > 0
        assert r['input_shape'] == [1, 3, *suite.cfg['det_train_size']]
    # Each config's own optimizer: AdamW for the transformers, mmdet's SGD for R-50.
    assert {label: r['optimizer'] for label, r in results.items()} == dict.fromkeys(
        DET_TRAIN_RUNS, 'AdamW') | {'R-50': 'SGD'}
    with_cp = {job['backbone_options'].get('with_cp', False) for job in suite.jobs
               if 'cvt13' in job['config']}
    assert with_cp == {False, True}


def test_profiled_runs_time_each_stage_and_list_backward_operators(det_train):
    _, section = det_train
    results = section['raw']
    for label in DET_TRAIN_PROFILED:
        stages = results[label]['stage_times']
        assert len(stages) == (4 if label == 'Swin-T' else 3), label
        assert all(t['forward'] > 0 and t['backward'] > 0 for t in stages.values()), label
        assert sum(t['backward'] for t in stages.values()) < results[label]['backward_time']
        ops = results[label]['backward_ops']
        assert ops and all(not op['op'].startswith('autograd::engine') for op in ops)
        assert sum(op['share'] for op in ops) <= 1 + 1e-6
    assert 'stage_times' not in results['R-50']


def test_tables_compare_every_run_with_swin(det_train):
    _, section = det_train
    steps, stages, ops = section['tables']
    assert [row[0] for row in steps['rows']] == list(DET_TRAIN_RUNS)
    swin = next(row for row in steps['rows'] if row[0] == 'Swin-T')
    assert swin[2] == '1.00x'
    assert [row[0] for row in stages['rows']] == list(DET_TRAIN_PROFILED)
    assert all(len(row) == len(stages['columns']) for row in stages['rows'])
    assert len(ops['columns']) == 1 + 2 * len(DET_TRAIN_PROFILED)


def test_device_table_says_why_nothing_ran():
    suite = SimpleNamespace(cfg=settings(quick=True), device_name='NVIDIA H200')
    empty = device_det_train_table(suite, {})
    assert empty['rows'] == [] and 'no compiled ops' in empty['notes'][0]
    table = device_det_train_table(suite, {'CvT-13': dict(times=[0.5], peak_device_mb=2048.),
                                           'Swin-T': dict(times=[0.25], peak_device_mb=1024.),
                                           'R-50': None})
    assert table['rows'] == [['CvT-13', '0.500', '2.00x', '2.00'],
                             ['Swin-T', '0.250', '1.00x', '1.00'], ['R-50', 'failed', '', '']]
