"""tools/benchmark.py and tools/benchmarking/: the quick suite end to end, docs/benchmarks.md as a
rendering of docs/benchmarks.json, and section-by-section updates of the results data.

Timings are the benchmark's business (docs/benchmarks.md); nothing here is timed.
"""
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from benchmarking import load_results, merge_sections, save_results
from benchmarking.report import MARK_END, MARK_START
from benchmarking.sections import CLS_TRAIN_RUNS, DETECTORS
from benchmarking.suite import render_only
from helpers import WITHOUT_MMCV_OPS, sitecustomize_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / 'tools' / 'benchmark.py'
DOCS = REPO_ROOT / 'docs'


def run_tool(*args, timeout=900, cwd=REPO_ROOT, **env_vars):
    env = dict(os.environ, PYTHONWARNINGS='ignore', **env_vars)
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=timeout)


def section(title, measured='2026-01-01 00:00', threads=2, **extra):
    env = dict(cpu='test CPU', logical_cores=2, cpu_capability='AVX2', threads=threads,
               torch='2.x', transformers='4.x', python='3.x')
    return dict(measured=measured, minutes=1.0, load_average=[0.5, 0.7], environment=env,
                tables=[dict(title=title, columns=['a', 'b'], rows=[['1', '2']], notes=['n'])],
                **extra)


def test_benchmark_quick_runs_end_to_end(tmp_path):
    out = tmp_path / 'bench.md'
    out.write_text('# Title\n\nhand-written text\n\n<!-- results:start -->\nold\n'
                   '<!-- results:end -->\n\ntrailing text\n')
    # All sections but compile (test_compiled_backbone_matches_eager covers it, and each
    # compilation takes a minute); one thread, as each pytest worker has one core. Run from
    # outside the checkout: the workers find the benchmark's package from any directory.
    proc = run_tool('--quick', '--out', out, '--threads', '1', '--json', tmp_path / 'raw.json',
                    '--sections', 'cls', 'dense', 'train', 'det', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert 'hand-written text' in text and 'trailing text' in text and '\nold\n' not in text
    for title in ('Classification', 'Backbone forward', 'Training step',
                  'Classifier training step', 'Mask R-CNN inference', 'Mask R-CNN backbones'):
        assert f'### {title}' in text, title
    assert 'failed' not in proc.stderr
    assert (tmp_path / 'benchmark_sizes.png').stat().st_size > 1000
    raw = json.loads((tmp_path / 'raw.json').read_text())
    assert raw['cls']['diffs']['cvt_mm'] < 1e-4
    assert set(raw['det']) == set(DETECTORS)
    assert set(raw['train']['classifier']) == set(CLS_TRAIN_RUNS)
    classifiers = raw['train']['classifier']
    assert all(r['times'] for r in classifiers.values())
    # The rows are what their labels say: cvt_mm's QuickGELU, and mmpretrain's own class.
    assert classifiers['cvt_mm']['mlp_activations'] == ['cvt_mm.models.backbones.cvt.QuickGELU']
    assert classifiers['cvt_mm_library_act']['mlp_activations'] == [
        'mmpretrain.models.utils.clip_generator_helper.QuickGELU']
    data = load_results(tmp_path / 'bench.json')
    assert data['quick'] and data['threads'] == 1
    assert list(data['sections']) == ['cls', 'dense', 'train', 'det']
    assert data['sections']['dense']['per_size']['impls']['hf']
    assert data['sections']['cls']['environment']['cpu_capability']
    dense_before = data['sections']['dense']

    # Re-running one section keeps the others' results.
    proc = run_tool('--quick', '--out', out, '--threads', '1', '--sections', 'cls')
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.count('### Mask R-CNN inference') == 1
    assert text.count('### Classification') == 1
    assert load_results(tmp_path / 'bench.json')['sections']['dense'] == dense_before


def test_committed_page_is_the_rendering_of_the_committed_data(tmp_path):
    # Copies, so that the link and the header name the same relative files as in docs/.
    for name in ('benchmarks.md', 'benchmarks.json', 'benchmark_sizes.png'):
        shutil.copy(DOCS / name, tmp_path / name)
    proc = run_tool('--render-only', '--data', tmp_path / 'benchmarks.json', '--out',
                    tmp_path / 'benchmarks.md', timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / 'benchmarks.md').read_text() == (DOCS / 'benchmarks.md').read_text(), (
        'docs/benchmarks.md differs from docs/benchmarks.json: run '
        'python tools/benchmark.py --render-only')
    assert MARK_START in (DOCS / 'benchmarks.md').read_text()


def test_rerun_sections_replace_only_themselves(tmp_path):
    path = tmp_path / 'results.json'
    save_results(path, merge_sections(None, {'det': section('old det'),
                                             'cls': section('old cls')}, False, 2))
    assert list(load_results(path)['sections']) == ['cls', 'det']  # SECTIONS order

    save_results(path, merge_sections(load_results(path), {'cls': section('new cls')}, False, 2))
    sections = load_results(path)['sections']
    assert [s['tables'][0]['title'] for s in sections.values()] == ['new cls', 'old det']

    # Other threads or a smoke run never mix with the stored numbers.
    for quick, threads in ((True, 2), (False, 4)):
        merged = merge_sections(load_results(path), {'dense': section('d', threads=threads)},
                                quick, threads)
        assert list(merged['sections']) == ['dense']


def test_render_only_redraws_the_plot_and_keeps_the_text_around(tmp_path):
    points = [dict(input=[96, 160], times=[0.2, 0.3], peak_rss_mb=900., rss_built_mb=800.)]
    dense = section('Backbone forward', per_size=dict(arch='tiny', impls=dict(cvt_mm=points,
                                                                                hf=points)))
    other = section('Classification', threads=2)
    other['environment'] = dict(other['environment'], torch='2.y')
    save_results(tmp_path / 'b.json',
                 merge_sections(None, {'dense': dense, 'cls': other, 'det': section('x')},
                                False, 2))
    out = tmp_path / 'b.md'
    out.write_text(f'head\n{MARK_START}\nold\n{MARK_END}\ntail\n')
    render_only(tmp_path / 'b.json', out)
    text = out.read_text()
    assert text.startswith('head\n') and text.endswith('tail\n') and '\nold\n' not in text
    assert (tmp_path / 'benchmark_sizes.png').stat().st_size > 1000
    assert '![latency and peak RSS against input size](benchmark_sizes.png)' in text
    # The environment most sections share heads the block; a section's own is its note.
    assert '- torch 2.x, transformers 4.x, python 3.x.' in text
    assert text.count('torch 2.y') == 1


def test_device_section_quick_on_cpu_without_mmcv_ops(tmp_path):
    # What `--device cuda` measures on a GPU, here on the CPU with FAST_TEST_ARCH, with mmcv's
    # compiled ops hidden as on a GPU box with the offline wheels: every worker runs, the
    # numerical checks pass and a failed one would fail the exit status.
    env = sitecustomize_env(tmp_path / 'site', WITHOUT_MMCV_OPS)
    pythonpath = env['PYTHONPATH']
    probe = subprocess.run([sys.executable, '-c', 'import mmcv.ops'], capture_output=True,
                           text=True, env=env)
    assert "No module named 'mmcv._ext'" in probe.stderr  # the ops are really hidden
    out = tmp_path / 'bench.md'
    proc = run_tool('--device', 'cpu', '--quick', '--threads', '1', '--out', out,
                    '--json', tmp_path / 'raw.json', PYTHONPATH=pythonpath)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = load_results(tmp_path / 'bench.json')
    assert list(data['sections']) == ['device-cpu']
    titles = [tab['title'] for tab in data['sections']['device-cpu']['tables']]
    assert [title.split(' ')[0] for title in titles] == ['Classification', 'Backbones', 'Mask',
                                                         'cvt_mm']
    # Without mmcv's ops the det-train step runs on torchvision's RoIAlign and NMS, and its
    # table says so.
    det_train = data['sections']['device-cpu']['tables'][2]
    assert [row[0] for row in det_train['rows']] == ['CvT-13', 'CvT-13 fast', 'Swin-T', 'R-50']
    assert det_train['notes'] == ["RoIAlign and NMS: torchvision's, standing in for mmcv's "
                                  'compiled ops (cvt_mm.mmcv_ext_fallback).']
    raw = json.loads((tmp_path / 'raw.json').read_text())['device-cpu']
    assert set(raw['throughput']) == {'cvt_mm', 'hf', 'swin'}
    assert all(r['times'] for r in raw['det_train'].values())
    for impl, result in raw['throughput'].items():
        for per_dtype in result['results'].values():
            assert set(per_dtype) == {'fp32', 'bf16', 'fp16'}, impl
            assert all('times' in entry for entry in per_dtype.values()), (impl, per_dtype)
    assert all(r['results']['bf16']['train']['times'] for r in raw['dense'].values())
    checks = {check['check']: check for check in raw['checks']['checks']}
    assert all(check['passed'] for check in checks.values()), checks
    assert {'maps bf16 vs CPU fp32', 'AMP fp16 training step'} <= set(checks)
    # The bounds a device's output must meet, as max |diff| / max(1, max |CPU fp32 output|):
    # fp32 is the same arithmetic in another order; bf16's 8 and fp16's 11 mantissa bits lose
    # a few percent and a few tenths of a percent over the blocks. A check of the code that
    # passes a looser bound than these fails here.
    bounds = dict(fp32=1e-4, bf16=5e-2, fp16=1e-2)
    for output, dtype in itertools.product(('logits', 'maps'), bounds):
        check = checks[f'{output} {dtype} vs CPU fp32']
        assert check['tolerance'] <= bounds[dtype] and check['value'] <= bounds[dtype], check
    # Reduced precision differs from fp32.
    assert checks['maps bf16 vs CPU fp32']['value'] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU machine has CUDA to run on')
def test_device_cuda_without_a_gpu_is_a_one_line_error():
    proc = run_tool('--device', 'cuda', timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        '--device cuda: torch.cuda.is_available() is False on this machine')
