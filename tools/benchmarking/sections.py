"""The benchmark's sections: which workers each spawns, and the tables made of their results.

``measure_<name>`` takes the running :class:`~benchmarking.suite.Suite` (its ``spawn``,
``cfg`` of :func:`~benchmarking.suite.settings`, ``threads`` and ``arch_name``) and
returns ``dict(tables=[...], raw=...)``: the tables as data (:func:`table`) and the workers'
raw results; the dense section adds ``per_size``, what the size plot is drawn from. A table's
notes carry what the run measured besides its cells (peaks, scales, repeats); what a section
measures and how is docs/benchmarks.md's.
"""
import sys
from statistics import median
from typing import Callable, Dict, List, Optional, Sequence

from .cpu_workers import cpu_has_bf16

# Measured on ``--device`` (cuda or cpu) and stored as 'device-<type>' beside the CPU sections.
DEVICE_SECTION = 'device'
# The device section's classifiers and dense backbones: impl key of
# benchmarking.builders -> row label.
DEVICE_CLASSIFIERS = {'cvt_mm': 'cvt_mm CvT', 'hf': 'HF CvtForImageClassification',
                      'swin': 'timm Swin-T'}
DEVICE_BACKBONES = {'cvt_mm': 'cvt_mm CvT', 'cvt_mm_fast': 'cvt_mm CvT fast config',
                    'swin': 'timm Swin-T', 'hf': 'HF CvtModel'}
# Mask R-CNN configs of the det section: cvt_mm's (a name in cvt_mm's config directory) and
# mmdet's own Swin-T and R-50 (mmengine's ``mmdet::`` config paths).
DETECTORS = {
    'CvT-13': 'cvt13_maskrcnn_coco.py',
    'CvT-13 fast (pool_kv 2, stage-1 windows)': 'cvt13_maskrcnn-fast_coco.py',
    'Swin-T': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'R-50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
          notes: Sequence[str] = ()) -> dict:
    """One results table as data: title, column names, rows of rendered cells, notes."""
    return dict(title=title, columns=list(columns), rows=[list(row) for row in rows],
                notes=list(notes))


def fastest_slowest(times: Sequence[float], digits: int = 2) -> str:
    """A run's step times as the 'fastest-slowest s' cell."""
    return f'{min(times):.{digits}f}-{max(times):.{digits}f}'


def matmul_peak(r: dict) -> float:
    """A worker's fp32 matmul peak: the larger of its measurements before and after its
    runs."""
    return max(r['matmul_peak_gflops'], r['matmul_peak_after'])


def measure_cls(suite) -> dict:
    """CvT classification throughput, cvt_mm (eager and deploy) vs HF, same weights."""
    c = suite.cfg
    r = suite.spawn('cls', batch=c['cls_batch'], size=c['cls_size'], repeats=c['cls_repeats'])
    if r is None:
        return dict(tables=[], raw=None)
    peak = matmul_peak(r)
    hf_median = median(r['times']['hf'])
    rows = []
    names = {'hf': 'HF CvtForImageClassification', 'cvt_mm': 'cvt_mm (eager)',
             'cvt_mm_deploy': 'cvt_mm (switch_to_deploy)',
             'cvt_mm_unchunked': 'cvt_mm (eager, MLP unchunked)'}
    for key, label in names.items():
        latency = median(r['times'][key])
        throughput = c['cls_batch'] / latency
        gflops = 2 * r['macs_per_image'] * throughput / 1e9
        rows.append([label, f'{latency * 1000:.0f}', f"{min(r['times'][key]) * 1000:.0f}",
                     f'{throughput:.1f}', f'{hf_median / latency:.2f}x', f'{gflops:.0f}',
                     f'{100 * gflops / peak:.0f}%',
                     '-' if key == 'hf' else f"{r['diffs'][key]:.1e}"])
    return dict(raw=r, tables=[table(
        f"Classification, CvT-{suite.arch_name} {c['cls_size']}x{c['cls_size']} batch "
        f"{c['cls_batch']}, eval, fp32, {suite.threads} threads",
        ['model', 'ms / batch (median)', 'best', 'img/s', 'vs HF', 'GFLOP/s', 'of matmul peak',
         'max |logit diff| vs HF'], rows,
        [f"{r['macs_per_image'] / 1e9:.2f} GMACs per image; GFLOP/s = 2 x MACs x img/s.",
         f"fp32 matmul peak: {r['matmul_peak_gflops']:.0f} GFLOP/s before, "
         f"{r['matmul_peak_after']:.0f} after the runs; the larger is used.",
         f"Max |logit|: {r['logit_scale']:.1f}.",
         f"{len(r['times']['hf'])} interleaved repeats after {c['warmup']} warm-up."])])


def measure_compile(suite) -> dict:
    """``torch.compile`` (inductor) of the cvt_mm backbone vs eager."""
    c = suite.cfg
    rows, raw = [], []
    jobs = [(f"{c['cls_size']}x{c['cls_size']} batch {c['cls_batch']}, cls token",
             dict(batch=c['cls_batch'], size=[c['cls_size']] * 2, featmap=False)),
            (f"{c['compile_dense_size'][0]}x{c['compile_dense_size'][1]} batch 1, maps",
             dict(batch=1, size=list(c['compile_dense_size']), featmap=True))]
    for label, job in jobs:
        # Without freezing only at the classification size: each compilation takes a minute
        # or two.
        both = not job['featmap'] and c['compile_without_freezing']
        for freezing in (True, False) if both else (True,):
            r = suite.spawn('compile', freezing=freezing, **job)
            if r is None:
                continue
            raw.append(dict(label=label, freezing=freezing, **r))
            eager, compiled = median(r['eager']), median(r['compiled'])
            rows.append([label, 'yes' if freezing else 'no', f"{r['compile_time']:.0f}",
                         f'{eager * 1000:.0f}', f'{compiled * 1000:.0f}',
                         f'{eager / compiled:.2f}x', f"{r['diff']:.1e}"])
    if not rows:
        return dict(tables=[], raw=raw)
    return dict(raw=raw, tables=[table(
        f"torch.compile (inductor, CPU) of the cvt_mm CvT-{suite.arch_name} backbone",
        ['input', 'freezing', 'compile + first call (s)', 'eager ms', 'compiled ms',
         'speed-up', 'max |diff| vs eager'], rows,
        [f"{c['repeats']} interleaved eager/compiled repeats after compilation."])])


def measure_dense(suite) -> dict:
    """Backbone latency and peak RSS against input size, cvt_mm vs HF ``CvtModel``."""
    c = suite.cfg
    results: Dict[str, dict] = {'cvt_mm': {}, 'hf': {}}
    for long_side in c['dense_long_sides']:
        size = (round(long_side * c['dense_size'][0] / c['dense_size'][1]), long_side)
        if long_side == c['dense_long_sides'][-1]:
            size = tuple(c['dense_size'])
        for impl in results:
            repeats = c['repeats'] if size == tuple(c['dense_size']) else max(
                1, c['repeats'] // 2)
            r = suite.spawn('backbone', impl=impl, size=list(size), repeats=repeats)
            if r is not None:
                results[impl][size] = r
    rows = []
    for size in sorted(set(results['cvt_mm']) | set(results['hf'])):
        ours, hf = results['cvt_mm'].get(size), results['hf'].get(size)
        row = [f'{size[0]}x{size[1]}']
        for r in (ours, hf):
            row += (['-', '-'] if r is None else
                    [f"{median(r['times']):.2f}", f"{r['peak_rss_mb'] / 1024:.2f}"])
        if ours and hf:
            row += [f"{median(hf['times']) / median(ours['times']):.1f}x",
                    f"{(hf['peak_rss_mb'] - hf['rss_built_mb']) / 1024:.2f} / "
                    f"{(ours['peak_rss_mb'] - ours['rss_built_mb']) / 1024:.2f}"]
        else:
            row += ['-', '-']
        row.append('-' if ours is None else f"{ours['macs'] / 1e9:.0f}")
        rows.append(row)
    if not rows:
        return dict(tables=[], raw=None)
    baseline = next(iter(results['cvt_mm'].values()), None)
    hf_base = next(iter(results['hf'].values()), None)
    notes = []
    if baseline and hf_base:
        notes.append(f"Process baseline after imports and model build: cvt_mm "
                     f"{baseline['rss_built_mb'] / 1024:.2f} GB, HF "
                     f"{hf_base['rss_built_mb'] / 1024:.2f} GB.")
    # What the plot is drawn from, kept in the data file so that it can be redrawn.
    per_size = dict(arch=suite.arch_name, impls={
        impl: [dict(input=list(size), times=r['times'], peak_rss_mb=r['peak_rss_mb'],
                    rss_built_mb=r['rss_built_mb'])
               for size, r in sorted(res.items(), key=lambda item: item[0][1])]
        for impl, res in results.items()})
    raw = {impl: {f'{h}x{w}': r for (h, w), r in res.items()} for impl, res in results.items()}
    return dict(raw=raw, per_size=per_size, tables=[table(
        f"Backbone forward, CvT-{suite.arch_name}, one image, cvt_mm vs HF CvtModel, "
        f"{suite.threads} threads",
        ['input', 'cvt_mm s', 'cvt_mm peak RSS GB', 'HF s', 'HF peak RSS GB', 'speed-up',
         'forward memory HF / cvt_mm GB', 'GMACs'], rows, notes)])


# The backbone training runs of the train section: row label -> (with_cp, CvT's cpu_kernels).
TRAIN_RUNS = {'with_cp off': (False, True), 'with_cp on': (True, True),
              'query chunks off': (False, dict(query_chunks=1)),
              'CPU kernels off': (False, False)}


def cpu_kernels_cell(cpu_kernels) -> str:
    if cpu_kernels is True:
        return 'on'
    return 'off' if cpu_kernels is False else ', '.join(f'{k}={v}' for k, v in cpu_kernels.items())


def measure_train(suite) -> dict:
    """One training step of the backbone (QuickGELU, as users train it), with and without
    ``with_cp``, without the CPU attention's query chunks and without any CPU kernel; then the
    classifier's training step (:func:`measure_cls_train`). A process per run,
    ``train_rounds`` rounds taking turns (:func:`take_turns`)."""
    c = suite.cfg

    def spawn(label: str, last_round: bool) -> Optional[dict]:
        with_cp, cpu_kernels = TRAIN_RUNS[label]
        return suite.spawn('train', size=list(c['train_size']), with_cp=with_cp,
                           cpu_kernels=cpu_kernels, repeats=1)

    backbones = take_turns(TRAIN_RUNS, c['train_rounds'], spawn)
    tables = []
    if backbones:
        rows = []
        for label, r in backbones.items():
            with_cp, cpu_kernels = TRAIN_RUNS[label]
            rows.append(['yes' if with_cp else 'no', cpu_kernels_cell(cpu_kernels),
                         f"{median(r['times']):.2f}", fastest_slowest(r['times']),
                         f"{r['peak_rss_mb'] / 1024:.2f}",
                         f"{(r['peak_rss_mb'] - r['rss_built_mb']) / 1024:.2f}"])
        size = c['train_size']
        tables.append(table(
            f"Training step (forward + backward), CvT-{suite.arch_name} backbone with QuickGELU, "
            f"{size[0]}x{size[1]}, batch 1",
            ['with_cp', 'CPU kernels', 's / step (median)', 'fastest-slowest s',
             'peak RSS GB', 'above baseline GB'], rows,
            ["QuickGELU, the official activation, which users train with and the MLP's CPU "
             'kernel folds into its weights.',
             'CPU kernels: CvT(cpu_kernels=...), cvt_mm/models/backbones/cpu_kernels.py; '
             'query_chunks=1: the attention\'s queries in one piece (its chunks keep every '
             'thread busy in backward), the MLP still chunked; off: the plain modules.',
             f"One step after {c['warmup']} warm-up in each of {c['train_rounds']} processes "
             'per run, the runs taking turns.']))
    classifiers = measure_cls_train(suite)
    if classifiers['table'] is not None:
        tables.append(classifiers['table'])
    return dict(raw=dict(backbone=backbones, classifier=classifiers['raw']), tables=tables)


# The classifier training runs of the train section: worker impl -> row label.
CLS_TRAIN_RUNS = {
    'cvt_mm': 'cvt_mm CvT (mmpretrain ImageClassifier)',
    'cvt_mm_library_act': "cvt_mm CvT with mmpretrain's QuickGELU class (MLP unfolded, "
                          'unchunked)',
    'swin': 'timm Swin-T',
}
CLS_TRAIN_BASELINE = 'swin'


def measure_cls_train(suite) -> dict:
    """One classification training step at the cls section's batch and size: the CvT
    classifier as mmpretrain builds it, the same with mmpretrain's QuickGELU class, timm's
    Swin-T; a process per run, ``train_rounds`` rounds taking turns."""
    c = suite.cfg

    def spawn(impl: str, last_round: bool) -> Optional[dict]:
        return suite.spawn('cls_train', impl=impl, batch=c['cls_batch'], size=c['cls_size'])

    results = take_turns(CLS_TRAIN_RUNS, c['train_rounds'], spawn)
    baseline = results.get(CLS_TRAIN_BASELINE)
    rows = []
    for impl, r in results.items():
        step = median(r['times'])
        versus = f"{step / median(baseline['times']):.2f}x" if baseline else '-'
        rows.append([CLS_TRAIN_RUNS[impl], f'{step:.3f}',
                     fastest_slowest(r['times'], digits=3),
                     f"{c['cls_batch'] / step:.1f}", versus, f"{r['peak_rss_mb'] / 1024:.2f}"])
    if not rows:
        return dict(table=None, raw=results)
    return dict(raw=results, table=table(
        f"Classifier training step, CvT-{suite.arch_name} {c['cls_size']}x{c['cls_size']} batch "
        f"{c['cls_batch']}, fp32, {suite.threads} threads",
        ['model', 's / step (median)', 'fastest-slowest s', 'img/s', 'vs Swin-T',
         'peak RSS GB'], rows,
        ['Forward with the loss, backward, AdamW; random images and labels. '
         f"{c['repeats']} steps after {c['warmup']} warm-up in each of {c['train_rounds']} "
         'processes per model, the models taking turns.',
         "mmpretrain registers a QuickGELU of its own, which its scope chose for cvt_mm's "
         'MLPs before 2026-12-05 (commit 128dccc): its row is what a classifier trained '
         'at.']))


def take_turns(labels: Sequence[str], rounds: int,
               spawn: Callable[[str, bool], Optional[dict]]) -> Dict[str, dict]:
    """Each label's worker ``spawn(label, last_round)`` once per round, the labels taking
    turns, so that a CPU whose speed drifts (a shared virtual machine's) slows them alike;
    each label's processes merged (:func:`merge_rounds`), labels whose workers all failed
    left out."""
    runs: Dict[str, List[dict]] = {label: [] for label in labels}
    for round_index in range(rounds):
        for label in labels:
            r = spawn(label, round_index == rounds - 1)
            if r is not None:
                runs[label].append(r)
    return {label: merge_rounds(done) for label, done in runs.items() if done}


def measure_det(suite) -> dict:
    """Mask R-CNN per image: CvT-13 vs mmdet's Swin-T and R-50."""
    c = suite.cfg
    bf16 = cpu_has_bf16()
    results = {}
    for name, config in DETECTORS.items():
        r = suite.spawn('det', config=config, size=list(c['det_size']),
                        thresholds=list(c['det_thresholds']), bf16=bf16,
                        repeats=max(1, c['repeats'] // 2 + 1))
        if r is not None:
            results[name] = r
    if not results:
        return dict(tables=[], raw=results)
    reference = results.get('R-50')
    labels = {'config': 's/img, test_cfg as is (dets)', 'thr0': 's/img, score_thr 0 (dets)'}
    thresholds = [label for label in labels if label in c['det_thresholds']]
    main = thresholds[-1]  # score_thr 0 when measured: the typical workload

    def latency(r, label):
        return median(r[label]['times'])

    rows: List[List[str]] = []
    for name, r in results.items():
        feat = median(r[main]['extract_feat_times'])
        rest = median(total - inside for total, inside in zip(r[main]['times'],
                                                             r[main]['extract_feat_times']))
        rows.append(
            [name] + [f"{latency(r, label):.2f} ({r[label]['detections']})"
                      for label in thresholds] +
            ['-' if reference is None else
             f"{latency(r, main) / latency(reference, main):.2f}x",
             f'{feat:.2f}', f'{rest:.2f}',
             f"{r['macs_backbone'] / 1e9:.0f}", f"{r['macs_backbone_neck'] / 1e9:.0f}",
             f"{r['peak_rss_mb'] / 1024:.2f}"])
    first = next(iter(results.values()))
    shape, thr = first['input_shape'], first['config_score_thr']
    latency_table = table(
        f"Mask R-CNN inference per {c['det_size'][0]}x{c['det_size'][1]} image, random "
        f"weights, {suite.threads} threads",
        ['backbone'] + [labels[label] for label in thresholds] +
        [f'vs R-50 ({labels[main][7:]})'.replace(' (dets)', ''), 'backbone+neck s',
         'rest s (RPN, RoI heads, pipeline)', 'backbone GMACs', 'backbone+neck GMACs',
         'peak RSS GB'], rows,
        [f"The configs' RCNN score_thr: {thr}.",
         f"GMACs on the padded input {shape[2]}x{shape[3]}."])
    return dict(raw=results, tables=[
        latency_table, det_efficiency_table(suite, results, bf16, main, labels[main])])


# The det-train section's runs: row label -> (DETECTORS label, backbone options).
DET_TRAIN_RUNS = {
    'CvT-13': ('CvT-13', {}),
    'CvT-13, with_cp': ('CvT-13', dict(with_cp=True)),
    'CvT-13 fast': ('CvT-13 fast (pool_kv 2, stage-1 windows)', {}),
    'CvT-13 fast, with_cp': ('CvT-13 fast (pool_kv 2, stage-1 windows)', dict(with_cp=True)),
    'Swin-T': ('Swin-T', {}),
    'R-50': ('R-50', {}),
}
# The runs whose backward is profiled.
DET_TRAIN_PROFILED = ('CvT-13', 'CvT-13 fast', 'Swin-T')
# What the steps are compared with.
DET_TRAIN_BASELINE = 'Swin-T'
DEVICE_DET_TRAIN_RUNS = ('CvT-13', 'CvT-13 fast', 'Swin-T', 'R-50')


def measure_det_train(suite) -> dict:
    """One Mask R-CNN training step per image: CvT-13 (with_cp off and on), the fast config,
    mmdet's Swin-T and R-50, each in its own process; the profiled runs' stages and
    backward operators.

    The runs take turns: ``det_train_rounds`` rounds of a fresh process per run, each timing
    ``det_train_repeats`` steps, so that every run's steps spread over the whole section and
    a CPU whose speed drifts (a shared virtual machine's) slows them alike. The last round
    profiles; peak RSS is the largest of a run's processes.
    """
    def spawn(label: str, last_round: bool) -> Optional[dict]:
        return spawn_det_train(suite, label, profile=last_round and label in DET_TRAIN_PROFILED,
                               top=8, repeats=suite.cfg['det_train_repeats'])

    results = take_turns(DET_TRAIN_RUNS, suite.cfg['det_train_rounds'], spawn)
    if not results:
        return dict(tables=[], raw=results)
    return dict(raw=results, tables=det_train_tables(suite, results))


def merge_rounds(runs: List[dict]) -> dict:
    """One run's processes as one result: the last one's (it profiled), every process's step
    times, and the RSS figures of the process that peaked highest."""
    highest = max(runs, key=lambda r: r['peak_rss_mb'])
    return dict(runs[-1], times=[t for r in runs for t in r['times']],
                peak_rss_mb=highest['peak_rss_mb'], rss_built_mb=highest['rss_built_mb'])


def spawn_det_train(suite, label: str, **job) -> Optional[dict]:
    """The det_train worker of one of :data:`DET_TRAIN_RUNS`; ``job`` adds to its keys."""
    c = suite.cfg
    detector, options = DET_TRAIN_RUNS[label]
    return suite.spawn('det_train', config=DETECTORS[detector], backbone_options=options,
                       size=list(c['det_train_size']), boxes=c['det_train_boxes'],
                       kernel_repeats=c['det_train_kernel_repeats'], **job)


def det_train_tables(suite, results: Dict[str, dict]) -> List[dict]:
    """The step table, then the profiled runs' per-stage and per-operator tables."""
    c = suite.cfg
    size = f"{c['det_train_size'][0]}x{c['det_train_size'][1]}"
    baseline = results.get(DET_TRAIN_BASELINE)
    rows = []
    for label, r in results.items():
        step = median(r['times'])
        rows.append([label, f'{step:.2f}', fastest_slowest(r['times']),
                     '-' if baseline is None else f"{step / median(baseline['times']):.2f}x",
                     f"{r['peak_rss_mb'] / 1024:.2f}",
                     f"{(r['peak_rss_mb'] - r['rss_built_mb']) / 1024:.2f}", r['optimizer']])
    tables = [table(
        f"Mask R-CNN training step per {size} image ({c['det_train_boxes']} boxes and masks), "
        f"random weights, {suite.threads} threads",
        ['model', 's / step (median)', 'fastest-slowest s', f'vs {DET_TRAIN_BASELINE}',
         'peak RSS GB', 'above baseline GB', 'optimizer'], rows,
        [f"Median of {c['det_train_rounds'] * c['det_train_repeats']} steps, "
         f"{c['det_train_repeats']} after a warm-up in each of {c['det_train_rounds']} "
         "processes per model, the models taking turns: forward with losses, backward, the "
         "config's optimizer step. Peak RSS: the highest of a model's processes."])]
    profiled = {label: results[label] for label in DET_TRAIN_PROFILED
                if label in results and 'stage_times' in results[label]}
    if not profiled:
        return tables
    width = max(len(r['stage_times']) for r in profiled.values())  # ResNet has four
    stage_rows, bound_rows = [], []
    for label, r in profiled.items():
        stages = list(r['stage_times'].values())
        backbone = sum(t['backward'] for t in stages)
        stage_rows.append(
            [label] + [f"{t['forward']:.2f} / {t['backward']:.2f}" for t in stages] +
            [''] * (width - len(stages)) +
            [f'{backbone:.2f}', f"{r['backward_time'] - backbone:.2f}",
             f"{r['backward_time']:.2f}"])
        if 'backbone_training_macs' in r:
            bound_rows.append(arithmetic_bound_row(label, r, stages, baseline))
    tables.append(table(
        f'Training step per stage at {size}: forward / backward seconds',
        ['model'] + [f'stage {i + 1}' for i in range(width)] +
        ['backbone backward s', 'rest of backward s (neck, heads)', 'backward s'], stage_rows,
        ['One step timed by module hooks, the backbone input requiring a gradient so that '
         "stage 1's backward ends when its input's gradient is computed."]))
    if bound_rows:
        tables.append(table(
            f"The backbones' arithmetic in one training step at {size}",
            ['model', 'backbone GMACs (forward + backward)', 'at the matmul peak s',
             'stages forward + backward s', 'share of the peak',
             f'step at that bound vs {DET_TRAIN_BASELINE}'], bound_rows,
            ["GMACs counted by torch's FlopCounterMode (cvt_mm.macs.training_macs): matrix "
             "products, convolutions and attention as their kernels run them, the CPU flash "
             "kernel's backward recomputing the attention weights. At the matmul peak: "
             "2 x MACs over the worker's fp32 matmul peak (the larger of before and after). "
             "Stages: the per-stage table's sum. Step at that bound: the median step with the "
             "stages' time replaced by the time at the peak, over the baseline's median "
             "step: what the model would cost if its backbone ran at the matmul peak and the "
             "rest of the step as measured."]))
    kernel_rows = [row for label, r in profiled.items()
                   for row in attention_kernel_rows(label, r)]
    if kernel_rows:
        tables.append(table(
            f'Attention kernels of the training step at {size}, each call alone',
            ['model', 'q (batch, heads, queries, dim)', 'keys', 'calls',
             'forward ms per call', 'of the peak', 'backward ms per call', 'of the peak'],
            kernel_rows,
            ["Each distinct scaled_dot_product_attention call of one training forward, run "
             f"alone on that call's own tensors: medians of {c['det_train_kernel_repeats']} "
             "forwards and backwards after a warm-up. Of the peak: the CPU flash kernel's "
             "multiply-accumulates (two products forward; five backward, the attention weights "
             "recomputed) at the worker's matmul peak over the time taken. The all-calls row: "
             "every call of the step, in seconds."]))
    op_lists = [r['backward_ops'] for r in profiled.values()]
    op_rows = operator_rows(op_lists, max(len(ops) for ops in op_lists))
    columns = ['#']
    for label in profiled:
        columns += [f'{label} op', 'self CPU (calls)']
    tables.append(table(
        f'Profile: top operators of the training backward at {size}, {suite.threads} threads',
        columns, op_rows, ['Self CPU time under torch.profiler, one backward after the timed '
                           'steps; shares of all its operators\' self time.']))
    return tables


def arithmetic_bound_row(label: str, r: dict, stages: List[dict],
                         baseline: Optional[dict]) -> list:
    """A row of the det_train section's arithmetic table (see its note)."""
    peak = matmul_peak(r)
    at_peak = 2 * r['backbone_training_macs'] / (peak * 1e9)
    measured = sum(t['forward'] + t['backward'] for t in stages)
    bound = '-'
    if baseline is not None:
        step = median(r['times']) - measured + at_peak
        bound = f"{step / median(baseline['times']):.2f}x"
    return [label, f"{r['backbone_training_macs'] / 1e9:.4g}", f'{at_peak:.2f}',
            f'{measured:.2f}', f'{at_peak / measured:.0%}', bound]


def attention_kernel_rows(label: str, r: dict) -> List[List[str]]:
    """The rows of a profiled run's attention kernels (the det_train section's table; see its
    note), then their sum over all the step's calls; none without kernels."""
    kernels = r.get('attention_kernels')
    if not kernels:
        return []
    peak = matmul_peak(r) * 1e9

    def share(macs: float, seconds: float) -> str:
        return f'{2 * macs / peak / seconds:.0%}'

    rows = [[label, ' x '.join(map(str, k['query'])), str(k['key'][2]),
             str(k['calls']) + (' (masked)' if k['masked'] else ''),
             f"{1e3 * k['forward_s']:.1f}", share(k['forward_macs'], k['forward_s']),
             f"{1e3 * k['backward_s']:.1f}", share(k['backward_macs'], k['backward_s'])]
            for k in kernels]
    total = {key: sum(k['calls'] * k[key] for k in kernels)
             for key in ('forward_s', 'backward_s', 'forward_macs', 'backward_macs')}
    rows.append([label, f"all {sum(k['calls'] for k in kernels)} calls", '', '',
                 f"{total['forward_s']:.2f} s", share(total['forward_macs'], total['forward_s']),
                 f"{total['backward_s']:.2f} s",
                 share(total['backward_macs'], total['backward_s'])])
    return rows


def det_efficiency_table(suite, results: Dict[str, dict], bf16: bool, main: str,
                         threshold_label: str) -> dict:
    """The detectors' backbones alone: achieved GFLOP/s against the matmul peak, and the
    per-image latency with backbone and neck in bf16 under the ``main`` threshold (whose column
    label is ``threshold_label``)."""
    c = suite.cfg
    rows = []
    for name, r in results.items():
        backbone = median(r['backbone_times'])
        peak = matmul_peak(r)
        gflops = 2 * r['macs_backbone'] / backbone / 1e9
        row = [name, f'{backbone:.2f}', f"{r['macs_backbone'] / 1e9:.0f}", f'{gflops:.0f}',
               f'{100 * gflops / peak:.0f}%']
        if bf16:
            fp32, reduced = median(r[main]['times']), median(r['bf16']['times'])
            row += [f"{reduced:.2f} ({r['bf16']['detections']})",
                    f"{median(r['bf16_extract_feat_times']):.2f}", f'{fp32 / reduced:.2f}x']
        rows.append(row)
    peaks = ', '.join(f"{r['matmul_peak_gflops']:.0f}/{r['matmul_peak_after']:.0f}"
                      for r in results.values())
    notes = [f'fp32 matmul peak of each worker before/after its runs (the larger is used): '
             f'{peaks} GFLOP/s.']
    columns = ['backbone', 'backbone s (fp32)', 'GMACs', 'GFLOP/s', 'of matmul peak']
    if bf16:
        columns += [f'bf16: {threshold_label}', 'bf16: backbone+neck s',
                    'bf16 speed-up per image']
    else:
        notes.append('No bf16 columns: this CPU has neither AVX-512 BF16 nor AMX.')
    return table(f"Mask R-CNN backbones at {c['det_size'][0]}x{c['det_size'][1]}: achieved "
                 f"GFLOP/s{' and bf16' if bf16 else ''}, {suite.threads} threads",
                 columns, rows, notes)


def operator_rows(op_lists: List[Optional[List[dict]]], top: int) -> List[List[str]]:
    """Table rows ranking profiled operators side by side: rank, then name and "self time,
    share (calls)" for each list (blank where a list is shorter or its run failed)."""
    rows = []
    for i in range(top):
        row = [str(i + 1)]
        for ops in op_lists:
            if not ops or i >= len(ops):
                row += ['', '']
                continue
            op = ops[i]
            name = op['op'].replace('aten::', '').replace(
                '_scaled_dot_product_flash_attention_for_cpu', 'SDPA (flash, CPU)')
            row += [name.replace(')_backward', ') backward'),
                    f"{op['ms']:.0f} ms, {100 * op['share']:.0f}% ({op['calls']})"]
        rows.append(row)
    return rows


def measure_profile(suite) -> dict:
    """torch.profiler's top operators of cvt_mm and HF, classifier and dense sizes."""
    c = suite.cfg
    cases = [(f"{c['cls_size']}x{c['cls_size']} batch {c['cls_batch']}",
              dict(batch=c['cls_batch'], size=[c['cls_size']] * 2, featmap=False)),
             (f"{c['dense_size'][0]}x{c['dense_size'][1]} batch 1",
              dict(batch=1, size=list(c['dense_size']), featmap=True))]
    top = 8
    tables, raw = [], {}
    for label, job in cases:
        results = {impl: suite.spawn('profile', impl=impl, top=top, **job)
                   for impl in ('cvt_mm', 'hf')}
        raw[label] = results
        if not any(results.values()):
            continue
        rows = operator_rows([r and r['top'] for r in results.values()], top)
        totals = {impl: (f"{r['total']:.2f} s" if r else 'failed')
                  for impl, r in results.items()}
        model = 'backbone' if job['featmap'] else 'classifier'
        tables.append(table(
            f"Profile: top operators, CvT-{suite.arch_name} {model} at {label}, "
            f"{suite.threads} threads",
            ['#', 'cvt_mm op', 'self CPU (calls)', 'HF op', 'self CPU (calls)'], rows,
            [f"Wall time under the profiler: cvt_mm {totals['cvt_mm']}, HF "
             f"{totals['hf']}."]))
    return dict(tables=tables, raw=raw)


def measure_device(suite) -> dict:
    """Throughput, detection-size backbones and numerical checks on ``suite.device``."""
    c = suite.cfg
    device = suite.device
    dtypes = list(c['device_dtypes'])
    throughput = {impl: suite.spawn('throughput', impl=impl, device=device,
                                    sizes=c['device_sizes'], dtypes=dtypes,
                                    batch=c['device_batch'], repeats=c['device_repeats'],
                                    warmup=c['device_warmup'])
                  for impl in DEVICE_CLASSIFIERS}
    dense = {impl: suite.spawn('dense_device', impl=impl, device=device,
                               size=list(c['device_dense_size']),
                               batch=c['device_dense_batch'], dtypes=dtypes[:2],
                               repeats=c['repeats'], warmup=c['warmup'])
             for impl in DEVICE_BACKBONES}
    checks = suite.spawn('checks', device=device, dtypes=dtypes, cls_size=c['cls_size'],
                         dense_size=list(c['device_check_size']))
    det_train = {}
    if roi_ops_available():  # mmdet's RoI heads need RoIAlign and NMS
        det_train = {label: spawn_det_train(suite, label, device=device,
                                            repeats=c['device_repeats'],
                                            warmup=c['device_warmup'])
                     for label in DEVICE_DET_TRAIN_RUNS}
    tables = [throughput_table(suite, throughput), dense_table(suite, dense),
              device_det_train_table(suite, det_train)]
    if checks is not None:
        failed = [check['check'] for check in checks['checks'] if not check['passed']]
        if failed:
            suite.failures += len(failed)
            print(f'device checks failed: {failed}', file=sys.stderr)
        tables.append(checks_table(suite, checks['checks']))
    return dict(raw=dict(throughput=throughput, dense=dense, checks=checks,
                         det_train=det_train),
                tables=[tab for tab in tables if tab is not None])


def roi_ops_available() -> bool:
    """Whether the workers have RoIAlign and NMS: mmcv's compiled ops, or torchvision's in their
    place (:mod:`cvt_mm.mmcv_ext_fallback`, which ``import cvt_mm`` installs)."""
    from cvt_mm import mmcv_ext_fallback
    return not mmcv_ext_fallback.compiled_ops_absent() or mmcv_ext_fallback.installed()


def device_det_train_table(suite, results: Dict[str, Optional[dict]]) -> dict:
    """The det-train step on the device: time, and peak device memory on CUDA."""
    c = suite.cfg
    size = f"{c['det_train_size'][0]}x{c['det_train_size'][1]}"
    title = (f"Mask R-CNN training step per {size} image on {suite.device_name}, fp32")
    if not results:
        return table(title, ['model', 's / step'], [],
                     ['Not run: this mmcv has no compiled ops (mmcv._ext) and there is no '
                      'torchvision to stand in for its RoIAlign and NMS, which the RoI heads '
                      'need.'])
    baseline = results.get(DET_TRAIN_BASELINE)
    rows = []
    for label, r in results.items():
        if r is None:
            rows.append([label, 'failed', '', ''])
            continue
        step = median(r['times'])
        peak = r['peak_device_mb']
        rows.append([label, f'{step:.3f}',
                     '-' if baseline is None else f"{step / median(baseline['times']):.2f}x",
                     '-' if peak is None else f'{peak / 1024:.2f}'])
    sources = {r['roi_ops'] for r in results.values() if r is not None}
    notes = [f'RoIAlign and NMS: {source}.' for source in sorted(sources)]
    return table(title, ['model', 's / step (median)', f'vs {DET_TRAIN_BASELINE}',
                         'peak device memory GB'], rows, notes)


def images_per_second(entry: dict) -> Optional[float]:
    """img/s from a throughput entry's median batch time; None for a failed one."""
    if 'times' not in entry:
        return None
    return entry['batch'] / median(entry['times'])


def throughput_table(suite, throughput: Dict[str, Optional[dict]]) -> Optional[dict]:
    c = suite.cfg
    sizes, largest = [str(size) for size in c['device_sizes']], str(c['device_sizes'][-1])
    rows, smaller_batch = [], False
    for impl, label in DEVICE_CLASSIFIERS.items():
        r = throughput[impl]
        if r is None:
            continue
        for dtype in c['device_dtypes']:
            cells = []
            for size in sizes:
                entry = r['results'][size][dtype]
                speed = images_per_second(entry)
                if speed is None:
                    cells.append('out of memory' if 'out of memory' in entry['error']
                                 else 'failed')
                    continue
                smaller_batch |= entry['batch'] != c['device_batch']
                cells.append(f'{speed:.1f}' + ('' if entry['batch'] == c['device_batch']
                                               else f" (batch {entry['batch']})"))
            ratios = []
            ours = images_per_second(r['results'][largest][dtype])
            for other in ('hf', 'swin'):
                theirs = (None if impl != 'cvt_mm' or throughput[other] is None
                          else images_per_second(throughput[other]['results'][largest][dtype]))
                ratios.append('-' if ours is None or theirs is None else f'{ours / theirs:.2f}x')
            rows.append([label, dtype] + cells + ratios)
    if not rows:
        return None
    notes = [f"Median of {c['device_repeats']} timed batches after {c['device_warmup']} "
             "warm-up."]
    if smaller_batch:
        notes.append('(batch N): the batch did not fit in memory and was halved until one '
                     'did; img/s is of that batch.')
    return table(f'Classification throughput on {suite.device_name}, '
                 f'CvT-{suite.arch_name} vs Swin-T, img/s',
                 ['model', 'dtype'] + [f'{size}x{size}' for size in sizes] +
                 [f'cvt_mm vs HF at {largest}x{largest}',
                  f'cvt_mm vs Swin-T at {largest}x{largest}'], rows, notes)


def dense_table(suite, dense: Dict[str, Optional[dict]]) -> Optional[dict]:
    c = suite.cfg

    def cells(entry: dict) -> List[str]:
        if 'times' not in entry:
            return [entry['error'], '-']
        memory = entry['peak_memory_mb']
        return [f"{median(entry['times']) * 1000:.0f}",
                '-' if memory is None else f'{memory / 1024:.2f}']

    swin = dense.get('swin')
    rows = []
    for impl, label in DEVICE_BACKBONES.items():
        r = dense[impl]
        if r is None:
            continue
        for dtype, entry in r['results'].items():
            train_memory = entry['train'].get('peak_memory_mb')
            swin_memory = (swin['results'][dtype]['train'].get('peak_memory_mb')
                           if swin is not None else None)
            rows.append([label, dtype] + cells(entry['forward']) + cells(entry['train']) +
                        ['-' if not (train_memory and swin_memory)
                         else f'{train_memory / swin_memory:.2f}x'])
    if not rows:
        return None
    h, w = c['device_dense_size']
    return table(f"Backbones at {h}x{w}, batch {c['device_dense_batch']}, on "
                 f'{suite.device_name}',
                 ['backbone', 'dtype', 'forward ms', 'forward peak GB', 'training step ms',
                  'training peak GB', 'training memory vs Swin-T'], rows)


def checks_table(suite, checks: List[dict]) -> dict:
    rows = [[check['check'],
             f"{check['value']:.1e}" if 'abs_diff' in check else
             f"loss {check['value']:.3f}, loss scale {check['loss_scale']:g} "
             f"(step {check['steps']})",
             f"{check['tolerance']:.0e}" if isinstance(check['tolerance'], float)
             else check['tolerance'], 'pass' if check['passed'] else 'FAIL']
            for check in checks]
    c = suite.cfg
    return table(f'cvt_mm CvT-{suite.arch_name} on {suite.device_name} against its CPU '
                 'output', ['check', 'measured', 'tolerance', 'result'], rows,
                 [f"Logits at {c['cls_size']}x{c['cls_size']} batch 2, maps at "
                  f"{c['device_check_size'][0]}x{c['device_check_size'][1]}."])


# Section name -> its measurement, in the order sections run and are stored; the device
# section (run on --device only) last.
MEASURE = dict(cls=measure_cls, compile=measure_compile, dense=measure_dense,
               train=measure_train, det=measure_det, det_train=measure_det_train,
               profile=measure_profile,
               device=measure_device)
# The CPU sections, run by default.
SECTIONS = tuple(name for name in MEASURE if name != DEVICE_SECTION)
