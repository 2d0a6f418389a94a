"""CPU benchmark of cvt_mm's CvT against Hugging Face transformers' and mmdet's detectors.

Sections (``--sections``, default all of them, in this order):

  cls      CvT-13 classification at 224x224, batch 16, eval: throughput of cvt_mm (eager and
           ``switch_to_deploy()``) and HF ``CvtForImageClassification`` on the same weights,
           their max abs logit difference, achieved GFLOP/s (2 x MACs / time) as a fraction of
           this CPU's fp32 matmul peak (2048x2048 matmul, measured in the same process).
  compile  ``torch.compile`` (inductor, freezing) of the cvt_mm backbone: compile time and
           steady-state speed at 224 batch 16 and at 800x1333.
  dense    CvT-13 backbone forward on one image, sizes from 224 to 1333 on the long side
           (aspect 800:1333): latency and peak RSS of cvt_mm vs HF ``CvtModel``; 800x1333 is the
           headline. Plotted to ``--plot``.
  train    one training step (forward + backward) of the backbone at 800x1333: time and peak
           RSS, with and without ``with_cp``.
  det      Mask R-CNN inference per 800x1333 image (mmdet test pipeline, random weights):
           CvT-13 vs mmdet's Swin-T and R-50, with backbone+neck GMACs and time.
  profile  torch.profiler's top operators of cvt_mm and HF at 224 batch 16 and at 800x1333.

The official microsoft/CvT code is not pip-installable (no package; it needs timm, einops and
``torch._six``, removed from torch 2), so it is not a column here; docs/parity.md compares it
numerically through a stand-in for ``torch._six`` (tools/check_parity.py).

Every measurement that reports memory runs in a fresh subprocess (``--worker``) that builds one
model and runs it, so peak RSS (``ru_maxrss``) is that model's alone; the process baseline
(torch, mmcv, mmdet imported, model built) is reported next to it. Threads: ``--threads`` for
torch, OMP and MKL alike. The load average before and after each section is recorded, since a
shared CPU inflates every number.

    python tools/benchmark.py                          # everything (~15 min on 2 cores)
    python tools/benchmark.py --sections cls dense     # some sections
    python tools/benchmark.py --quick --out /tmp/b.md  # tiny models and sizes, a smoke test

Results go to ``--out`` (default docs/benchmarks.md) between the markers ``<!-- results:start
-->`` and ``<!-- results:end -->``, leaving the text around them alone (a new file gets just the
results).
"""
import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = '<!-- results:start -->', '<!-- results:end -->'
STATE_START, STATE_END = '<!-- tables as data (lets --sections rerun a part): ', ' -->'
TINY_ARCH = dict(embed_dims=[16, 32, 48], depths=[1, 2, 3], num_heads=[1, 2, 3])
DETECTORS = {
    'CvT-13': str(REPO_ROOT / 'configs' / 'cvt13_maskrcnn_coco.py'),
    'Swin-T': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'R-50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}
SECTIONS = ('cls', 'compile', 'dense', 'train', 'det', 'profile')


def settings(quick: bool) -> dict:
    """Sizes and repeats of a full run or of a ``--quick`` smoke test."""
    if quick:
        return dict(arch=TINY_ARCH, cls_batch=2, cls_size=64, dense_long_sides=[160],
                    dense_size=(96, 160), train_size=(96, 160), det_size=(128, 224),
                    compile_dense_size=(64, 96), det_thresholds=('config',), repeats=1,
                    cls_repeats=1, warmup=1)
    return dict(arch='13', cls_batch=16, cls_size=224,
                dense_long_sides=[224, 448, 640, 896, 1120, 1333], dense_size=(800, 1333),
                train_size=(800, 1333), det_size=(800, 1333), compile_dense_size=(800, 1333),
                det_thresholds=('config', 'thr0'), repeats=5, cls_repeats=10, warmup=1)


# =============================================================================== workers
# Each runs in its own process: ``benchmark.py --worker JSON`` prints one ``RESULT {...}`` line.

def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn: Callable, repeats: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def arch_dict(arch):
    from cvt_mm.models.backbones.cvt import CvT
    return CvT.arch_zoo[arch] if isinstance(arch, str) else arch


def matmul_peak_gflops(repeats: int = 10) -> float:
    """fp32 GFLOP/s of a 2048x2048 matmul (median of ``repeats``), this CPU's practical peak."""
    import torch
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = timed(lambda: torch.mm(a, b), repeats, warmup=2)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def cvt_macs(model, shape) -> float:
    import torch

    from cvt_mm.analysis import count_macs
    with torch.no_grad():
        return count_macs(model, (torch.zeros(*shape),)).total()


def worker_cls(job: dict) -> dict:
    """HF classifier vs cvt_mm (eager and deploy) on the same weights, runs interleaved."""
    import torch

    from cvt_mm.parity import build_hf_and_cvt_mm
    peak = matmul_peak_gflops()
    arch = arch_dict(job['arch'])
    hf_model, ours = build_hf_and_cvt_mm(arch, 1000, seed=0)
    deployed = copy.deepcopy(ours)
    deployed.backbone.switch_to_deploy()
    images = torch.randn(job['batch'], 3, job['size'], job['size'])
    runners = {'hf': lambda: hf_model(images).logits,
               'cvt_mm': lambda: ours(images, mode='tensor'),
               'cvt_mm_deploy': lambda: deployed(images, mode='tensor')}
    times = {name: [] for name in runners}
    with torch.inference_mode():
        reference = runners['hf']()
        diffs = {name: (run() - reference).abs().max().item()
                 for name, run in runners.items() if name != 'hf'}
        for _ in range(job['warmup']):
            for run in runners.values():
                run()
        for _ in range(job['repeats']):  # interleaved: drifting load hits all alike
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    macs = cvt_macs(ours, (1, 3, job['size'], job['size']))
    return dict(times=times, diffs=diffs, logit_scale=reference.abs().max().item(),
                macs_per_image=macs, matmul_peak_gflops=peak,
                matmul_peak_after=matmul_peak_gflops())


def build_backbone(impl: str, arch, featmap: bool = True, **kwargs):
    """One backbone: 'cvt_mm' (dense-prediction outputs: three maps) or HF ``CvtModel``."""
    import torch
    torch.manual_seed(0)
    arch = arch_dict(arch)
    if impl == 'hf':
        import transformers
        config = transformers.CvtConfig(embed_dim=arch['embed_dims'], depth=arch['depths'],
                                        num_heads=arch['num_heads'])
        model = transformers.CvtModel(config, add_pooling_layer=False)
        return model.eval(), lambda x: model(x, output_hidden_states=True).hidden_states
    from cvt_mm.models.backbones.cvt import CvT
    out = dict(out_type='featmap', out_indices=(0, 1, 2)) if featmap else {}
    model = CvT(arch=arch, act_cfg=dict(type='GELU'), **out, **kwargs)
    model.init_weights()
    return model.eval(), model


def worker_backbone(job: dict) -> dict:
    """Latency and peak RSS of one backbone forward at one size, in this fresh process."""
    import torch
    rss_start = rss_mb()
    model, run = build_backbone(job['impl'], job['arch'])
    image = torch.randn(1, 3, *job['size'])
    rss_built = rss_mb()
    with torch.inference_mode():
        times = timed(lambda: run(image), job['repeats'], job['warmup'])
    peak = peak_rss_mb()
    result = dict(times=times, peak_rss_mb=peak, rss_start_mb=rss_start,
                  rss_built_mb=rss_built)
    if job['impl'] == 'cvt_mm':
        result['macs'] = cvt_macs(model, (1, 3, *job['size']))
    return result


def worker_compile(job: dict) -> dict:
    """Compile time and steady state of ``torch.compile`` (inductor) vs eager, one process."""
    import torch
    import torch._inductor.config as inductor_config
    inductor_config.freezing = job['freezing']  # weights as constants: prepacked for oneDNN
    model, _ = build_backbone('cvt_mm', job['arch'], featmap=job['featmap'])
    images = torch.randn(job['batch'], 3, *job['size'])
    compiled = torch.compile(model)
    with torch.inference_mode():
        expected = model(images)
        start = time.perf_counter()
        outputs = compiled(images)
        compile_time = time.perf_counter() - start
        diff = max((a - b).abs().max().item() for a, b in zip(outputs, expected))
        eager, steady = [], []
        for _ in range(job['repeats']):
            for bucket, fn in ((eager, model), (steady, compiled)):
                start = time.perf_counter()
                fn(images)
                bucket.append(time.perf_counter() - start)
    return dict(compile_time=compile_time, eager=eager, compiled=steady, diff=diff)


def worker_train(job: dict) -> dict:
    """Peak RSS and time of forward + backward of the backbone (train mode, fresh process)."""
    import torch
    rss_start = rss_mb()
    model, _ = build_backbone('cvt_mm', job['arch'], with_cp=job['with_cp'])
    model.train()
    image = torch.randn(1, 3, *job['size'])
    rss_built = rss_mb()

    def step():
        outputs = model(image)
        sum(o.pow(2).mean() for o in outputs).backward()
        model.zero_grad(set_to_none=True)

    times = timed(step, job['repeats'], job['warmup'])
    return dict(times=times, peak_rss_mb=peak_rss_mb(), rss_start_mb=rss_start,
                rss_built_mb=rss_built)


def build_detector(name: str, arch, size):
    """mmdet Mask R-CNN from its config, random weights (init_cfg without checkpoints)."""
    import numpy as np
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.registry import MODELS, init_default_scope

    register_all_modules()
    source = DETECTORS[name]
    cfg = get_config(source) if source.startswith('mmdet::') else Config.fromfile(source)
    cfg.model.backbone.init_cfg = None
    if name == 'CvT-13' and arch != '13':  # --quick: a tiny CvT
        cfg.model.backbone.arch = arch
        cfg.model.neck.in_channels = arch['embed_dims']
    for step in cfg.test_dataloader.dataset.pipeline:  # same pipeline, chosen scale
        if step['type'] == 'Resize':
            step['scale'] = (size[1], size[0])
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.cfg = cfg
    model.dataset_meta = dict(classes=tuple(f'class{i}' for i in range(80)))
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return model.eval(), image


def worker_det(job: dict) -> dict:
    """Per-image latency of mmdet's ``inference_detector`` (pipeline + model), two RCNN score
    thresholds: the config's, and 0 (100 detections per image, as a trained model gives)."""
    import torch
    from mmdet.apis import inference_detector

    from cvt_mm.analysis import count_macs
    rss_start = rss_mb()
    model, image = build_detector(job['name'], job['arch'], job['size'])
    rss_built = rss_mb()
    result = dict(rss_start_mb=rss_start, rss_built_mb=rss_built, config_score_thr=float(
        model.roi_head.test_cfg.score_thr))
    for label in job['thresholds']:
        if label == 'thr0':
            model.roi_head.test_cfg.score_thr = 0.0
        detections = []

        def run():
            detections.append(len(inference_detector(model, image).pred_instances))

        result[label] = dict(times=timed(run, job['repeats'], job['warmup']),
                             detections=detections[-1])
    # The backbone + neck alone, on the padded input the detector sees.
    data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]),
                                   False)
    inputs = data['inputs']
    with torch.no_grad():
        result['extract_feat_times'] = timed(lambda: model.extract_feat(inputs),
                                             job['repeats'], job['warmup'])
    result['peak_rss_mb'] = peak_rss_mb()
    result['input_shape'] = list(inputs.shape)
    with torch.no_grad():
        result['macs_backbone'] = count_macs(model.backbone, (inputs,)).total()
        result['macs_backbone_neck'] = count_macs(
            torch.nn.Sequential(model.backbone, model.neck), (inputs,)).total()
    return result


def worker_profile(job: dict) -> dict:
    """torch.profiler's top operators (self CPU time) of one eval forward."""
    import torch
    if job['impl'] == 'hf' and job['featmap'] is False:
        from cvt_mm.parity import build_hf_and_cvt_mm
        model = build_hf_and_cvt_mm(arch_dict(job['arch']), 1000)[0]
        run = model
    else:
        model, run = build_backbone(job['impl'], job['arch'], featmap=job['featmap'])
    images = torch.randn(job['batch'], 3, *job['size'])
    with torch.inference_mode():
        run(images)  # warm-up
        with torch.profiler.profile() as prof:
            start = time.perf_counter()
            run(images)
            total = time.perf_counter() - start
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    self_total = sum(e.self_cpu_time_total for e in events)
    top = [dict(op=e.key, ms=e.self_cpu_time_total / 1e3, calls=e.count,
                share=e.self_cpu_time_total / self_total) for e in events[:job['top']]]
    return dict(total=total, top=top)


WORKERS = dict(cls=worker_cls, backbone=worker_backbone, compile=worker_compile,
               train=worker_train, det=worker_det, profile=worker_profile)


def run_worker(job_json: str) -> None:
    job = json.loads(job_json)
    import torch
    torch.set_num_threads(job['threads'])
    torch.manual_seed(0)
    sys.path.insert(0, str(REPO_ROOT))
    import cvt_mm  # noqa: F401  (registers CvT)
    result = WORKERS[job['kind']](job)
    print('RESULT ' + json.dumps(result), flush=True)


# ============================================================================ orchestration
def markdown_row(cells) -> str:
    return '| ' + ' | '.join(str(cell).replace('|', '\\|') for cell in cells) + ' |'


class Bench:
    """Runs workers in subprocesses and collects rendered tables."""

    def __init__(self, args):
        self.args = args
        self.cfg = settings(args.quick)
        if args.repeats:
            self.cfg['repeats'] = args.repeats
        # Per section: its tables (title, columns, rows, notes), raw results, load and time.
        self.sections: Dict[str, dict] = {}
        self.current = None
        self.raw = {}

    def spawn(self, kind: str, **job) -> Optional[dict]:
        job = dict(dict(kind=kind, threads=self.args.threads, arch=self.cfg['arch'],
                        repeats=self.cfg['repeats'], warmup=self.cfg['warmup']), **job)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads),
                   MKL_NUM_THREADS=str(self.args.threads), PYTHONWARNINGS='ignore')
        proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(job)],
                              capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        for line in proc.stdout.splitlines():
            if line.startswith('RESULT '):
                return json.loads(line[len('RESULT '):])
        print(f'worker {kind} {job} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}',
              file=sys.stderr)
        return None

    def section(self, name: str, fn: Callable) -> None:
        self.current = self.sections[name] = dict(tables=[], started=time.strftime(
            '%Y-%m-%d %H:%M'))
        before = os.getloadavg()[0]
        start = time.perf_counter()
        fn()
        self.current.update(load=(before, os.getloadavg()[0]),
                            minutes=(time.perf_counter() - start) / 60,
                            raw=self.raw.get(name))

    def add_table(self, title, columns, rows, notes=()):
        self.current['tables'].append((title, columns, rows, list(notes)))

    # ------------------------------------------------------------------ sections
    def run_cls(self):
        c = self.cfg
        r = self.spawn('cls', batch=c['cls_batch'], size=c['cls_size'],
                       repeats=self.args.repeats or c['cls_repeats'])
        if r is None:
            return
        self.raw['cls'] = r
        peak = max(r['matmul_peak_gflops'], r['matmul_peak_after'])
        hf_median = statistics.median(r['times']['hf'])
        rows = []
        names = {'hf': 'HF CvtForImageClassification', 'cvt_mm': 'cvt_mm (eager)',
                 'cvt_mm_deploy': 'cvt_mm (switch_to_deploy)'}
        for key, label in names.items():
            median = statistics.median(r['times'][key])
            throughput = c['cls_batch'] / median
            gflops = 2 * r['macs_per_image'] * throughput / 1e9
            rows.append([label, f'{median * 1000:.0f}', f"{min(r['times'][key]) * 1000:.0f}",
                         f'{throughput:.1f}',
                         f'{hf_median / median:.2f}x', f'{gflops:.0f}',
                         f'{100 * gflops / peak:.0f}%',
                         '-' if key == 'hf' else f"{r['diffs'][key]:.1e}"])
        self.add_table(
            f"Classification, CvT-{self.arch_name()} {c['cls_size']}x{c['cls_size']} batch "
            f"{c['cls_batch']}, eval, fp32, {self.args.threads} threads",
            ['model', 'ms / batch (median)', 'best', 'img/s', 'vs HF', 'GFLOP/s',
             'of matmul peak', 'max |logit diff| vs HF'], rows,
            [f"{r['macs_per_image'] / 1e9:.2f} GMACs per image (attention included); "
             f"GFLOP/s = 2 x MACs x img/s.",
             f"fp32 matmul peak (2048x2048) measured in the same process: "
             f"{r['matmul_peak_gflops']:.0f} GFLOP/s before, {r['matmul_peak_after']:.0f} "
             f"after the runs; the larger is used.",
             f"Same weights (HF random init, randomised norms and biases, converted); cvt_mm "
             f"with HF's exact GELU. Logits reach {r['logit_scale']:.1f} in magnitude.",
             f"{len(r['times']['hf'])} interleaved repeats after {c['warmup']} warm-up; "
             "img/s, ratio and GFLOP/s from the medians."])

    def run_compile(self):
        c = self.cfg
        rows = []
        jobs = [(f"{c['cls_size']}x{c['cls_size']} batch {c['cls_batch']}, cls token",
                 dict(batch=c['cls_batch'], size=[c['cls_size']] * 2, featmap=False)),
                (f"{c['compile_dense_size'][0]}x{c['compile_dense_size'][1]} batch 1, maps",
                 dict(batch=1, size=list(c['compile_dense_size']), featmap=True))]
        for label, job in jobs:
            # Without freezing only at the classification size (and not in --quick): each
            # compilation takes a minute or two.
            both = not job['featmap'] and not self.args.quick
            for freezing in (True, False) if both else (True,):
                r = self.spawn('compile', freezing=freezing, **job)
                if r is None:
                    continue
                self.raw.setdefault('compile', []).append(r)
                eager, compiled = statistics.median(r['eager']), statistics.median(r['compiled'])
                rows.append([label, 'yes' if freezing else 'no', f"{r['compile_time']:.0f}",
                             f'{eager * 1000:.0f}', f'{compiled * 1000:.0f}',
                             f'{eager / compiled:.2f}x', f"{r['diff']:.1e}"])
        self.add_table(
            f"torch.compile (inductor, CPU) of the cvt_mm CvT-{self.arch_name()} backbone",
            ['input', 'freezing', 'compile + first call (s)', 'eager ms', 'compiled ms',
             'speed-up', 'max |diff| vs eager'], rows,
            ['freezing=True (torch._inductor.config.freezing) treats weights as constants: '
             'oneDNN prepacks them and folds the BN arithmetic; inference only.',
             f"{c['repeats']} interleaved eager/compiled repeats after compilation."])

    def run_dense(self):
        c = self.cfg
        results = {'cvt_mm': {}, 'hf': {}}
        for long_side in c['dense_long_sides']:
            size = (round(long_side * c['dense_size'][0] / c['dense_size'][1]), long_side)
            if long_side == c['dense_long_sides'][-1]:
                size = tuple(c['dense_size'])
            for impl in results:
                repeats = c['repeats'] if size == tuple(c['dense_size']) else max(
                    1, c['repeats'] // 2)
                r = self.spawn('backbone', impl=impl, size=list(size), repeats=repeats)
                if r is not None:
                    results[impl][size] = r
        self.raw['dense'] = {impl: {f'{h}x{w}': r for (h, w), r in res.items()}
                             for impl, res in results.items()}
        rows = []
        for size in sorted(set(results['cvt_mm']) | set(results['hf'])):
            ours, hf = results['cvt_mm'].get(size), results['hf'].get(size)
            row = [f'{size[0]}x{size[1]}']
            for r in (ours, hf):
                row += (['-', '-'] if r is None else
                        [f"{statistics.median(r['times']):.2f}", f"{r['peak_rss_mb'] / 1024:.2f}"])
            if ours and hf:
                row += [f"{statistics.median(hf['times']) / statistics.median(ours['times']):.1f}x",
                        f"{(hf['peak_rss_mb'] - hf['rss_built_mb']) / 1024:.2f} / "
                        f"{(ours['peak_rss_mb'] - ours['rss_built_mb']) / 1024:.2f}"]
            else:
                row += ['-', '-']
            row.append('-' if ours is None else f"{ours['macs'] / 1e9:.0f}")
            rows.append(row)
        baseline = next(iter(results['cvt_mm'].values()), None)
        hf_base = next(iter(results['hf'].values()), None)
        notes = [f"{self.args.threads} threads, fp32, batch 1, eval; random weights; cvt_mm "
                 "returns the three stage maps (out_type='featmap'), HF CvtModel its hidden "
                 "states; median of the repeats.",
                 "Each model and size in a fresh process: peak RSS = ru_maxrss of a process that "
                 "only imported the libraries, built the model and ran it."]
        if baseline and hf_base:
            notes.append(f"Process baseline after imports and model build: cvt_mm "
                         f"{baseline['rss_built_mb'] / 1024:.2f} GB, HF "
                         f"{hf_base['rss_built_mb'] / 1024:.2f} GB (torch's CUDA-enabled "
                         f"libraries alone are ~0.7 GB of it).")
        self.add_table(
            f"Backbone forward, CvT-{self.arch_name()}, one image, cvt_mm vs HF CvtModel",
            ['input', 'cvt_mm s', 'cvt_mm peak RSS GB', 'HF s', 'HF peak RSS GB', 'speed-up',
             'forward memory HF / cvt_mm GB', 'GMACs'], rows, notes)
        self.plot(results)

    def plot(self, results):
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
        for impl, label, style in (('cvt_mm', 'cvt_mm', 'o-'), ('hf', 'Hugging Face', 's--')):
            points = sorted(results[impl].items(), key=lambda item: item[0][1])
            if not points:
                continue
            long_sides = [size[1] for size, _ in points]
            ax_time.plot(long_sides, [statistics.median(r['times']) for _, r in points], style,
                         label=label)
            ax_mem.plot(long_sides, [r['peak_rss_mb'] / 1024 for _, r in points], style,
                        label=label)
        for ax, ylabel in ((ax_time, 'forward latency (s)'), (ax_mem, 'peak RSS (GB)')):
            ax.set_xlabel('input long side (px, aspect 800:1333)')
            ax.set_ylabel(ylabel)
            ax.set_yscale('log')
            ax.grid(True, which='both', alpha=0.3)
            ax.legend()
        fig.suptitle(f'CvT-{self.arch_name()} backbone, batch 1, fp32, '
                     f'{self.args.threads} CPU threads')
        fig.tight_layout()
        self.args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.args.plot, dpi=110)
        plt.close(fig)

    def run_train(self):
        c = self.cfg
        rows = []
        for with_cp in (False, True):
            r = self.spawn('train', size=list(c['train_size']), with_cp=with_cp,
                           repeats=max(1, c['repeats'] // 2))
            if r is None:
                continue
            self.raw.setdefault('train', []).append(dict(with_cp=with_cp, **r))
            rows.append(['yes' if with_cp else 'no', f"{statistics.median(r['times']):.2f}",
                         f"{r['peak_rss_mb'] / 1024:.2f}",
                         f"{(r['peak_rss_mb'] - r['rss_built_mb']) / 1024:.2f}"])
        size = c['train_size']
        self.add_table(
            f"Training step (forward + backward), CvT-{self.arch_name()} backbone, "
            f"{size[0]}x{size[1]}, batch 1",
            ['with_cp', 's / step', 'peak RSS GB', 'above baseline GB'], rows,
            ['Train mode (BN batch statistics, drop path), loss = sum of the squared maps\' '
             'means, fresh process each; baseline = RSS after imports and model build.'])

    def run_det(self):
        c = self.cfg
        rows = []
        results = {}
        for name in DETECTORS:
            r = self.spawn('det', name=name, size=list(c['det_size']),
                           thresholds=c['det_thresholds'],
                           repeats=max(1, c['repeats'] // 2 + 1))
            if r is not None:
                results[name] = r
        self.raw['det'] = results
        if not results:
            return
        reference = results.get('R-50')
        labels = {'config': 's/img, test_cfg as is (dets)', 'thr0': 's/img, score_thr 0 (dets)'}
        thresholds = [label for label in labels if label in c['det_thresholds']]
        main = thresholds[-1]  # score_thr 0 when measured: the typical workload

        def latency(r, label):
            return statistics.median(r[label]['times'])

        for name, r in results.items():
            feat = statistics.median(r['extract_feat_times'])
            rows.append(
                [name] + [f"{latency(r, label):.2f} ({r[label]['detections']})"
                          for label in thresholds] +
                ['-' if reference is None else
                 f"{latency(r, main) / latency(reference, main):.2f}x",
                 f"{feat:.2f}", f"{latency(r, main) - feat:.2f}",
                 f"{r['macs_backbone'] / 1e9:.0f}", f"{r['macs_backbone_neck'] / 1e9:.0f}",
                 f"{r['peak_rss_mb'] / 1024:.2f}"])
        shape = next(iter(results.values()))['input_shape']
        thr = next(iter(results.values()))['config_score_thr']
        self.add_table(
            f"Mask R-CNN inference per {c['det_size'][0]}x{c['det_size'][1]} image, random "
            f"weights, {self.args.threads} threads",
            ['backbone'] + [labels[label] for label in thresholds] +
            [f'vs R-50 ({labels[main][7:]})'.replace(' (dets)', ''), 'backbone+neck s',
             'rest s (RPN, RoI heads, pipeline)',
             'backbone GMACs', 'backbone+neck GMACs', 'peak RSS GB'], rows,
            ['Latency = mmdet.apis.inference_detector on a uint8 image: test pipeline, data '
             'preprocessor, model; median of the repeats after a warm-up.',
             f'With random weights every class score is about 1/81, under the config\'s RCNN '
             f'score_thr {thr}: no detections, the mask head idles. With score_thr 0 each image '
             'keeps max_per_img=100 detections and the mask head runs on 100 RoIs, as for a '
             'trained model (NMS then sees 80 x 1000 candidates, more than a trained model '
             'passes it). RPN: the config\'s 1000 proposals either way.',
             f"GMACs counted with cvt_mm.analysis.count_macs (attention matmuls included) on "
             f"the padded input {shape[2]}x{shape[3]}.",
             'Configs: configs/cvt13_maskrcnn_coco.py, mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn'
             '_1x_coco.py, mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py; init_cfg checkpoints '
             'removed, init_weights() applied.'])

    def run_profile(self):
        c = self.cfg
        cases = [(f"{c['cls_size']}x{c['cls_size']} batch {c['cls_batch']}",
                  dict(batch=c['cls_batch'], size=[c['cls_size']] * 2, featmap=False)),
                 (f"{c['dense_size'][0]}x{c['dense_size'][1]} batch 1",
                  dict(batch=1, size=list(c['dense_size']), featmap=True))]
        top = 8
        for label, job in cases:
            results = {impl: self.spawn('profile', impl=impl, top=top, **job)
                       for impl in ('cvt_mm', 'hf')}
            self.raw.setdefault('profile', {})[label] = results
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
            model = 'classifier' if not job['featmap'] else 'backbone'
            self.add_table(
                f"Profile: top operators, CvT-{self.arch_name()} {model} at {label}",
                ['#', 'cvt_mm op', 'self CPU (calls)', 'HF op', 'self CPU (calls)'], rows,
                [f"torch.profiler, one eval forward after a warm-up, {self.args.threads} "
                 f"threads; wall time under the profiler: cvt_mm {totals['cvt_mm']}, HF "
                 f"{totals['hf']}. Shares are of the summed self CPU time."])

    def arch_name(self) -> str:
        return self.cfg['arch'] if isinstance(self.cfg['arch'], str) else 'tiny'

    # ------------------------------------------------------------------ output
    def environment(self) -> List[str]:
        import torch
        import transformers
        cpu = platform.processor()
        try:
            with open('/proc/cpuinfo') as f:
                cpu = next(line.split(':', 1)[1].strip() for line in f
                           if line.startswith('model name'))
        except (OSError, StopIteration):
            pass
        lines = [f'CPU: {cpu}, {os.cpu_count()} logical cores; {self.args.threads} threads '
                 '(torch, OMP, MKL).',
                 f'torch {torch.__version__}, transformers {transformers.__version__}, '
                 f'python {platform.python_version()}.']
        if self.args.quick:
            lines.insert(0, '**--quick smoke test: tiny model and sizes, numbers meaningless.**')
        return lines

    def merged_sections(self, previous_text: str) -> Dict[str, dict]:
        """This run's sections, plus the other sections of the results already in ``--out``
        (same --quick and threads), so that sections can be re-measured one at a time on a
        busy machine. The tables are kept in a comment of the results block."""
        merged = {}
        if STATE_START in previous_text:
            try:
                state = json.loads(previous_text.split(STATE_START, 1)[1].split(STATE_END)[0])
            except ValueError:
                state = {}
            if (state.get('quick') == self.args.quick
                    and state.get('threads') == self.args.threads):
                merged.update(state.get('sections', {}))
        merged.update({name: {key: value for key, value in section.items() if key != 'raw'}
                       for name, section in self.sections.items()})
        return {name: merged[name] for name in SECTIONS if name in merged}

    def render_markdown(self, sections: Dict[str, dict]) -> str:
        out = [MARK_START, '', '<!-- Generated by tools/benchmark.py; edits here are lost. -->',
               '']
        out += [f'- {line}' for line in self.environment()] + ['']
        for name, section in sections.items():
            load_before, load_after = section['load']
            out.append(f"<!-- section {name}: {section['started']}, "
                       f"{section['minutes']:.1f} min -->")
            for title, columns, rows, notes in section['tables']:
                out += [f'### {title}', '', markdown_row(columns),
                        '|' + '---|' * len(columns)]
                out += [markdown_row(row) for row in rows]
                notes = list(notes) + [
                    f"Measured {section['started']} ({section['minutes']:.1f} min); load "
                    f"average (1 min) {load_before:.1f} before, {load_after:.1f} after."]
                out += [''] + [f'- {note}' for note in notes] + ['']
                if title.startswith('Backbone forward') and self.args.plot.exists():
                    try:
                        rel = os.path.relpath(self.args.plot, self.args.out.parent)
                    except ValueError:
                        rel = str(self.args.plot)
                    out += [f'![latency and peak RSS against input size]({rel})', '']
        state = json.dumps(dict(quick=self.args.quick, threads=self.args.threads,
                                sections=sections), separators=(',', ':'))
        out += [STATE_START + state.replace('--', '-\\u002d') + STATE_END, MARK_END]
        return '\n'.join(out)

    def write(self) -> None:
        from rich.console import Console
        from rich.table import Table
        console = Console()
        for section in self.sections.values():
            for title, columns, rows, notes in section['tables']:
                table = Table(title=title, title_justify='left')
                for column in columns:
                    table.add_column(column, overflow='fold')
                for row in rows:
                    table.add_row(*row)
                console.print(table)
        path = self.args.out
        text = path.read_text() if path.exists() else ''
        results = self.render_markdown(self.merged_sections(text))
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            text = head + results + rest.split(MARK_END, 1)[1]
        else:
            text = '# Benchmarks\n\n' + results + '\n'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f'wrote {path}')
        if self.args.json:
            self.args.json.write_text(json.dumps(
                {name: section.get('raw') for name, section in self.sections.items()},
                indent=1, default=str))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument('--quick', action='store_true',
                        help='tiny model and sizes, 1 repeat: a smoke test')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, help='timed repeats (default 5, quick 1)')
    parser.add_argument('--out', type=Path, default=REPO_ROOT / 'docs' / 'benchmarks.md')
    parser.add_argument('--plot', type=Path,
                        help='PNG of time and memory against input size '
                             '(default: benchmark_sizes.png next to --out)')
    parser.add_argument('--json', type=Path, help='also write the raw measurements here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.plot is None:
        args.plot = args.out.parent / 'benchmark_sizes.png'
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker)
        return
    bench = Bench(args)
    for name in SECTIONS:
        if name in args.sections:
            bench.section(name, getattr(bench, f'run_{name}'))
    bench.write()


if __name__ == '__main__':
    main()
