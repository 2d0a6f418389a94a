"""The det-train section (one Mask R-CNN training step per image, each model as its config
builds it) on the quick settings, its workers run in this process; and its device table where
mmcv has no compiled ops."""
from types import SimpleNamespace

import pytest
from benchmarking.builders import arch_settings
from benchmarking.sections import (
    DET_TRAIN_PROFILED,
    DET_TRAIN_RUNS,
    DETECTORS,
    arithmetic_bound_row,
    attention_kernel_rows,
    device_det_train_table,
    measure_det_train,
    merge_rounds,
)
from benchmarking.suite import settings
from in_process import in_process_suite


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
    steps, stages, arithmetic, kernels, ops = section['tables']
    assert [row[0] for row in steps['rows']] == list(DET_TRAIN_RUNS)
    swin = next(row for row in steps['rows'] if row[0] == 'Swin-T')
    assert swin[3] == '1.00x'
    assert all(len(row) == len(steps['columns']) for row in steps['rows'])
    assert [row[0] for row in stages['rows']] == list(DET_TRAIN_PROFILED)
    assert all(len(row) == len(stages['columns']) for row in stages['rows'])
    assert len(ops['columns']) == 1 + 2 * len(DET_TRAIN_PROFILED)
    assert [row[0] for row in arithmetic['rows']] == list(DET_TRAIN_PROFILED)
    assert all(float(row[1]) > 0 for row in arithmetic['rows'])
    # Swin-T multiplies its own attention: CvT's kernels alone, each run's ending in its sum.
    assert {row[0] for row in kernels['rows']} == {'CvT-13', 'CvT-13 fast'}
    assert all(len(row) == len(kernels['columns']) for row in kernels['rows'])
    assert [row[1].startswith('all ') for row in kernels['rows']].count(True) == 2


def test_profiled_runs_time_every_attention_call_of_the_step_alone(det_train):
    suite, section = det_train
    results = section['raw']
    blocks = sum(arch_settings(suite.cfg['arch'])['depths'])
    for label in ('CvT-13', 'CvT-13 fast'):
        kernels = results[label]['attention_kernels']
        assert sum(k['calls'] for k in kernels) == blocks, label
        for k in kernels:
            assert k['forward_s'] > 0 and k['backward_s'] > 0, label
            # Five products backward to the forward's two, over the same shapes.
            assert 2 * k['backward_macs'] == 5 * k['forward_macs'] > 0
    assert results['Swin-T']['attention_kernels'] == []
    kernel_table = next(t for t in section['tables'] if t['title'].startswith('Attention'))
    repeats = suite.cfg['det_train_kernel_repeats']
    assert f'medians of {repeats} forwards' in kernel_table['notes'][0]


def test_profiled_runs_count_the_backbone_arithmetic_of_a_training_step(det_train):
    _, section = det_train
    results = section['raw']
    for label in DET_TRAIN_PROFILED:
        r = results[label]
        assert r['backbone_training_macs'] > 0 and r['matmul_peak_gflops'] > 0, label
    # The same tiny CvT arch with and without pooled keys: pooling removes attention work.
    assert (results['CvT-13 fast']['backbone_training_macs']
            < results['CvT-13']['backbone_training_macs'])


def test_arithmetic_bound_replaces_the_backbone_time_by_its_time_at_the_peak():
    # 100 GMACs at a 200 GFLOP/s peak: 1 s, where the stages took 4 s of a 10 s step; the
    # baseline's step is 8 s.
    r = dict(times=[10.], backbone_training_macs=100e9, matmul_peak_gflops=100.,
             matmul_peak_after=200.)
    row = arithmetic_bound_row('m', r, [dict(forward=1., backward=3.)], dict(times=[8.]))
    assert row == ['m', '100', '1.00', '4.00', '25%', '0.88x']
    assert arithmetic_bound_row('m', r, [dict(forward=1., backward=3.)], None)[-1] == '-'


def test_attention_kernel_rows_give_each_call_and_their_sum_against_the_peak():
    # One call of 1 GMAC forward in 40 ms and 2.5 backward in 100 ms, called twice, at a
    # 100 GFLOP/s peak: each way 50% of the peak.
    kernel = dict(query=[2, 1, 4096, 64], key=[2, 1, 1024, 64], calls=2, masked=False,
                  forward_s=0.04, backward_s=0.1, forward_macs=1e9, backward_macs=2.5e9)
    r = dict(attention_kernels=[kernel], matmul_peak_gflops=100., matmul_peak_after=80.)
    assert attention_kernel_rows('m', r) == [
        ['m', '2 x 1 x 4096 x 64', '1024', '2', '40.0', '50%', '100.0', '50%'],
        ['m', 'all 2 calls', '', '', '0.08 s', '50%', '0.20 s', '50%']]
    assert attention_kernel_rows('m', dict(attention_kernels=[])) == []


def test_runs_take_turns_round_by_round_and_the_last_round_profiles():
    spawned = []

    class RecordingSuite:
        cfg = dict(settings(quick=True), det_train_rounds=2)

        def spawn(self, kind, **job):
            spawned.append((job['config'], job['backbone_options'], job['profile']))
            return None  # as a failed worker: no tables

    assert measure_det_train(RecordingSuite())['tables'] == []
    one_round = [(DETECTORS[detector], options) for detector, options in DET_TRAIN_RUNS.values()]
    assert [call[:2] for call in spawned] == one_round * 2
    assert [profile for *_, profile in spawned] == [False] * len(DET_TRAIN_RUNS) + [
        label in DET_TRAIN_PROFILED for label in DET_TRAIN_RUNS]


def test_merged_rounds_keep_every_step_and_the_highest_peak():
    rounds = [dict(times=[3.], peak_rss_mb=900., rss_built_mb=500., optimizer='AdamW'),
              dict(times=[1.], peak_rss_mb=1000., rss_built_mb=400., optimizer='AdamW'),
              dict(times=[2.], peak_rss_mb=950., rss_built_mb=450., optimizer='AdamW',
                   stage_times={})]
    assert merge_rounds(rounds) == dict(times=[3., 1., 2.], peak_rss_mb=1000.,
                                        rss_built_mb=400., optimizer='AdamW', stage_times={})


def test_device_table_says_why_nothing_ran_and_which_ops_ran():
    suite = SimpleNamespace(cfg=settings(quick=True), device_name='NVIDIA H200')
    empty = device_det_train_table(suite, {})
    assert empty['rows'] == [] and 'no compiled ops' in empty['notes'][0]
    ops = "torchvision's, standing in for mmcv's compiled ops"
    table = device_det_train_table(
        suite, {'CvT-13': dict(times=[0.5], peak_device_mb=2048., roi_ops=ops),
                'Swin-T': dict(times=[0.25], peak_device_mb=1024., roi_ops=ops), 'R-50': None})
    assert table['rows'] == [['CvT-13', '0.500', '2.00x', '2.00'],
                             ['Swin-T', '0.250', '1.00x', '1.00'], ['R-50', 'failed', '', '']]
    assert table['notes'] == [f'RoIAlign and NMS: {ops}.']
