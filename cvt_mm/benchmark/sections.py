"""The benchmark's sections: which workers each spawns, and the tables made of their results.

``measure_<name>`` takes the running :class:`~cvt_mm.benchmark.runner.Suite` (its ``spawn``,
``cfg`` of :func:`~cvt_mm.benchmark.runner.settings`, ``threads`` and ``arch_name``) and
returns ``dict(tables=[...], raw=...)``: the tables as data (:func:`table`) and the workers'
raw results; the dense section adds ``per_size``, what the size plot is drawn from.
"""
from statistics import median
from typing import Dict, List, Sequence

SECTIONS = ('cls', 'compile', 'dense', 'train', 'det', 'profile')
# Mask R-CNN configs of the det section: cvt_mm's (a name in cvt_mm's config directory) and
# mmdet's own Swin-T and R-50 (mmengine's ``mmdet::`` config paths).
DETECTORS = {
    'CvT-13': 'cvt13_maskrcnn_coco.py',
    'CvT-13 fast (stride_kv 4, 2, 2)': 'cvt13_maskrcnn-fast_coco.py',
    'Swin-T': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'R-50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
          notes: Sequence[str] = ()) -> dict:
    """One results table as data: title, column names, rows of rendered cells, notes."""
    return dict(title=title, columns=list(columns), rows=[list(row) for row in rows],
                notes=list(notes))


def measure_cls(suite) -> dict:
    """CvT classification throughput, cvt_mm (eager and deploy) vs HF, same weights."""
    c = suite.cfg
    r = suite.spawn('cls', batch=c['cls_batch'], size=c['cls_size'], repeats=c['cls_repeats'])
    if r is None:
        return dict(tables=[], raw=None)
    peak = max(r['matmul_peak_gflops'], r['matmul_peak_after'])
    hf_median = median(r['times']['hf'])
    rows = []
    names = {'hf': 'HF CvtForImageClassification', 'cvt_mm': 'cvt_mm (eager)',
             'cvt_mm_deploy': 'cvt_mm (switch_to_deploy)'}
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
        [f"{r['macs_per_image'] / 1e9:.2f} GMACs per image (attention included); "
         f"GFLOP/s = 2 x MACs x img/s.",
         f"fp32 matmul peak (2048x2048) measured in the same process: "
         f"{r['matmul_peak_gflops']:.0f} GFLOP/s before, {r['matmul_peak_after']:.0f} "
         f"after the runs; the larger is used.",
         f"Same weights (HF random init, randomised norms and biases, converted); cvt_mm "
         f"with HF's exact GELU. Logits reach {r['logit_scale']:.1f} in magnitude.",
         f"{len(r['times']['hf'])} interleaved repeats after {c['warmup']} warm-up; "
         "img/s, ratio and GFLOP/s from the medians."])])


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
        ['freezing=True (torch._inductor.config.freezing) treats weights as constants: '
         'oneDNN prepacks them and folds the BN arithmetic; inference only.',
         f"{c['repeats']} interleaved eager/compiled repeats after compilation."])])


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
    notes = [f"{suite.threads} threads, fp32, batch 1, eval; random weights; cvt_mm "
             "returns the three stage maps (out_type='featmap'), HF CvtModel its hidden "
             "states; median of the repeats.",
             "Each model and size in a fresh process: peak RSS = ru_maxrss of a process that "
             "only imported the libraries, built the model and ran it."]
    if baseline and hf_base:
        notes.append(f"Process baseline after imports and model build: cvt_mm "
                     f"{baseline['rss_built_mb'] / 1024:.2f} GB, HF "
                     f"{hf_base['rss_built_mb'] / 1024:.2f} GB (torch's CUDA-enabled "
                     f"libraries alone are ~0.7 GB of it).")
    # What the plot is drawn from, kept in the data file so that it can be redrawn.
    per_size = dict(arch=suite.arch_name, impls={
        impl: [dict(input=list(size), times=r['times'], peak_rss_mb=r['peak_rss_mb'],
                    rss_built_mb=r['rss_built_mb'])
               for size, r in sorted(res.items(), key=lambda item: item[0][1])]
        for impl, res in results.items()})
    raw = {impl: {f'{h}x{w}': r for (h, w), r in res.items()} for impl, res in results.items()}
    return dict(raw=raw, per_size=per_size, tables=[table(
        f"Backbone forward, CvT-{suite.arch_name}, one image, cvt_mm vs HF CvtModel",
        ['input', 'cvt_mm s', 'cvt_mm peak RSS GB', 'HF s', 'HF peak RSS GB', 'speed-up',
         'forward memory HF / cvt_mm GB', 'GMACs'], rows, notes)])


def measure_train(suite) -> dict:
    """One training step of the backbone, with and without ``with_cp``."""
    c = suite.cfg
    rows, raw = [], []
    for with_cp in (False, True):
        r = suite.spawn('train', size=list(c['train_size']), with_cp=with_cp,
                        repeats=max(1, c['repeats'] // 2))
        if r is None:
            continue
        raw.append(dict(with_cp=with_cp, **r))
        rows.append(['yes' if with_cp else 'no', f"{median(r['times']):.2f}",
                     f"{r['peak_rss_mb'] / 1024:.2f}",
                     f"{(r['peak_rss_mb'] - r['rss_built_mb']) / 1024:.2f}"])
    if not rows:
        return dict(tables=[], raw=raw)
    size = c['train_size']
    return dict(raw=raw, tables=[table(
        f"Training step (forward + backward), CvT-{suite.arch_name} backbone, "
        f"{size[0]}x{size[1]}, batch 1",
        ['with_cp', 's / step', 'peak RSS GB', 'above baseline GB'], rows,
        ['Train mode (BN batch statistics, drop path), loss = sum of the squared maps\' '
         'means, fresh process each; baseline = RSS after imports and model build.'])])


def measure_det(suite) -> dict:
    """Mask R-CNN per image: CvT-13 vs mmdet's Swin-T and R-50."""
    c = suite.cfg
    results = {}
    for name, config in DETECTORS.items():
        r = suite.spawn('det', config=config, size=list(c['det_size']),
                        thresholds=list(c['det_thresholds']),
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
        feat = median(r['extract_feat_times'])
        rows.append(
            [name] + [f"{latency(r, label):.2f} ({r[label]['detections']})"
                      for label in thresholds] +
            ['-' if reference is None else
             f"{latency(r, main) / latency(reference, main):.2f}x",
             f'{feat:.2f}', f'{latency(r, main) - feat:.2f}',
             f"{r['macs_backbone'] / 1e9:.0f}", f"{r['macs_backbone_neck'] / 1e9:.0f}",
             f"{r['peak_rss_mb'] / 1024:.2f}"])
    first = next(iter(results.values()))
    shape, thr = first['input_shape'], first['config_score_thr']
    return dict(raw=results, tables=[table(
        f"Mask R-CNN inference per {c['det_size'][0]}x{c['det_size'][1]} image, random "
        f"weights, {suite.threads} threads",
        ['backbone'] + [labels[label] for label in thresholds] +
        [f'vs R-50 ({labels[main][7:]})'.replace(' (dets)', ''), 'backbone+neck s',
         'rest s (RPN, RoI heads, pipeline)', 'backbone GMACs', 'backbone+neck GMACs',
         'peak RSS GB'], rows,
        ['Latency = mmdet.apis.inference_detector on a uint8 image: test pipeline, data '
         'preprocessor, model; median of the repeats after a warm-up.',
         f'With random weights every class score is about 1/81, under the config\'s RCNN '
         f'score_thr {thr}: no detections, the mask head idles. With score_thr 0 each image '
         'keeps max_per_img=100 detections and the mask head runs on 100 RoIs, as for a '
         'trained model (NMS then sees 80 x 1000 candidates, more than a trained model '
         'passes it). RPN: the config\'s 1000 proposals either way.',
         f"GMACs counted with cvt_mm.analysis.count_macs (attention matmuls included) on "
         f"the padded input {shape[2]}x{shape[3]}.",
         'Configs: ' + ', '.join(
             f'configs/{config}' if not config.startswith('mmdet::') else config
             for config in DETECTORS.values())
         + '; init_cfg checkpoints removed, init_weights() applied.'])])


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
        rows = []
        for i in range(top):
            row = [str(i + 1)]
            for impl in ('cvt_mm', 'hf'):
                r = results[impl]
                if r is None or i >= len(r['top']):
                    row += ['', '']
                    continue
                op = r['top'][i]
                row += [op['op'].replace('aten::', '').replace(
                    '_scaled_dot_product_flash_attention_for_cpu', 'SDPA (flash, CPU)'),
                        f"{op['ms']:.0f} ms, {100 * op['share']:.0f}% ({op['calls']})"]
            rows.append(row)
        totals = {impl: (f"{r['total']:.2f} s" if r else 'failed')
                  for impl, r in results.items()}
        model = 'backbone' if job['featmap'] else 'classifier'
        tables.append(table(
            f"Profile: top operators, CvT-{suite.arch_name} {model} at {label}",
            ['#', 'cvt_mm op', 'self CPU (calls)', 'HF op', 'self CPU (calls)'], rows,
            [f"torch.profiler, one eval forward after a warm-up, {suite.threads} "
             f"threads; wall time under the profiler: cvt_mm {totals['cvt_mm']}, HF "
             f"{totals['hf']}. Shares are of the summed self CPU time."]))
    return dict(tables=tables, raw=raw)


MEASURE = dict(cls=measure_cls, compile=measure_compile, dense=measure_dense,
               train=measure_train, det=measure_det, profile=measure_profile)
