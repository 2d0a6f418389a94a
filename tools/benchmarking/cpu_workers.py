"""The CPU sections' measurements (cls, compile, dense, train, det, det_train, profile),
each a worker run in a fresh process by :mod:`.workers`: a process per measurement makes peak
RSS (``ru_maxrss``) that model's alone, next to the process's baseline (libraries imported, model
built).

torch, mmdet and transformers are imported inside the workers, so importing this module is
free.
"""
import copy
import sys
import time
from typing import Callable, Dict, List, Sequence

from .builders import (
    arch_settings,
    build_backbone,
    build_detector,
    detection_training_batch,
    timm_swin_t,
)
from .timing import MemoryTracker, matmul_peak_gflops, timed


def cvt_macs(model, shape: Sequence[int]) -> float:
    """Multiply-accumulates of one forward of ``model`` on zeros of ``shape``, attention
    included (:func:`cvt_mm.macs.count_macs`)."""
    import torch

    from cvt_mm.macs import count_macs
    with torch.no_grad():
        return count_macs(model, (torch.zeros(*shape),)).total()


def worker_cls(job: dict) -> dict:
    """HF ``CvtForImageClassification`` vs cvt_mm (eager, ``switch_to_deploy``, and eager with
    the MLP in one chunk, ``cpu_kernels=dict(mlp_chunk_rows=sys.maxsize)``) on the same
    weights: interleaved timings, max abs logit differences, MACs, matmul peak.

    Job keys: ``batch``, ``size`` (square side), ``repeats``, ``warmup``, ``arch``.
    """
    import torch
    from mmpretrain.registry import MODELS

    from cvt_mm.apis import classifier_cfg
    from cvt_mm.testing import build_hf_and_cvt_mm
    peak = matmul_peak_gflops()
    hf_model, ours = build_hf_and_cvt_mm(arch_settings(job['arch']), 1000, seed=0)
    deployed = copy.deepcopy(ours)
    deployed.backbone.switch_to_deploy()
    # What the MLP's chunked CPU inference saves: the same weights, the MLP in one chunk.
    unchunked = MODELS.build(classifier_cfg(arch_settings(job['arch']), 1000,
                                            act_cfg=dict(type='GELU'),
                                            cpu_kernels=dict(mlp_chunk_rows=sys.maxsize)))
    unchunked.load_state_dict(ours.state_dict())
    unchunked.eval()
    images = torch.randn(job['batch'], 3, job['size'], job['size'])
    runners = {'hf': lambda: hf_model(images).logits,
               'cvt_mm': lambda: ours(images, mode='tensor'),
               'cvt_mm_deploy': lambda: deployed(images, mode='tensor'),
               'cvt_mm_unchunked': lambda: unchunked(images, mode='tensor')}
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


def worker_backbone(job: dict) -> dict:
    """Latency and peak RSS of one backbone forward at one size.

    Job keys: ``impl`` ('cvt_mm' or 'hf'), ``size`` ([h, w]), ``repeats``, ``warmup``, ``arch``.
    """
    import torch

    memory = MemoryTracker()
    model, run = build_backbone(job['impl'], job['arch'])
    image = torch.randn(1, 3, *job['size'])
    memory.built()
    with torch.inference_mode():
        times = timed(lambda: run(image), job['repeats'], job['warmup'])
    result = dict(times=times, **memory.summary())
    if job['impl'] == 'cvt_mm':
        result['macs'] = cvt_macs(model, (1, 3, *job['size']))
    return result


def worker_compile(job: dict) -> dict:
    """Compile time and steady state of ``torch.compile`` (inductor) vs eager.

    Job keys: ``freezing`` (bool), ``featmap`` (bool), ``batch``, ``size`` ([h, w]),
    ``repeats``, ``arch``.
    """
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
    """Time and peak RSS of forward + backward of the backbone in train mode, with QuickGELU
    (the activation users train with, which the CPU kernels fold).

    Job keys: ``with_cp`` (bool), ``cpu_kernels`` (``CvT``'s argument: True, False or a dict
    of settings), ``size`` ([h, w]), ``repeats``, ``warmup``, ``arch``.
    """
    import torch

    memory = MemoryTracker()
    model, _ = build_backbone('cvt_mm', job['arch'], act='QuickGELU', with_cp=job['with_cp'],
                              cpu_kernels=job['cpu_kernels'])
    model.train()
    image = torch.randn(1, 3, *job['size'])
    memory.built()

    def step():
        outputs = model(image)
        sum(o.pow(2).mean() for o in outputs).backward()
        model.zero_grad(set_to_none=True)

    times = timed(step, job['repeats'], job['warmup'])
    return dict(times=times, **memory.summary())


def worker_cls_train(job: dict) -> dict:
    """One classification training step (forward with the loss, backward, AdamW): time and
    peak RSS.

    Job keys: ``impl`` ('cvt_mm': the mmpretrain ``ImageClassifier`` of the classification
    config, built under the mmpretrain scope as ``tools/train.py`` builds it;
    'cvt_mm_library_act': the same with mmpretrain's own QuickGELU class, which the CPU
    kernels neither fold nor chunk; 'swin': timm's Swin-T with cross-entropy), ``batch``, ``size``,
    ``repeats``, ``warmup``, ``arch``.
    """
    import torch

    from cvt_mm.models.backbones.cvt import Mlp
    memory = MemoryTracker()
    images = torch.randn(job['batch'], 3, job['size'], job['size'])
    labels = torch.arange(job['batch']) % 1000
    if job['impl'] == 'swin':
        model = timm_swin_t(job['arch'], img_size=job['size'], num_classes=1000)

        def loss_of_batch():
            return torch.nn.functional.cross_entropy(model(images), labels)
    else:
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        from mmpretrain.structures import DataSample

        from cvt_mm.apis import classifier_cfg
        init_default_scope('mmpretrain')
        act = dict(cvt_mm='QuickGELU', cvt_mm_library_act='mmpretrain.QuickGELU')[job['impl']]
        model = MODELS.build(classifier_cfg(job['arch'], act_cfg=dict(type=act)))
        model.init_weights()
        samples = [DataSample().set_gt_label(label) for label in labels.tolist()]

        def loss_of_batch():
            return model(images, samples, mode='loss')['loss']
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    memory.built()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of_batch().backward()
        optimizer.step()

    times = timed(step, job['repeats'], job['warmup'])
    return dict(times=times, **memory.summary(), mlp_activations=sorted(
        {f'{type(m.act).__module__}.{type(m.act).__name__}' for m in model.modules()
         if isinstance(m, Mlp)}))


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX-512 BF16 or AMX), without which
    bf16 runs as emulated fp32 and is no measure of anything."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next(line for line in f if line.startswith('flags')).split()
    except (OSError, StopIteration):
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def bf16_features(extract_feat: Callable) -> Callable:
    """``extract_feat`` (backbone + neck) under bf16 autocast, its maps returned in fp32: the
    RPN and RoI heads stay fp32, since mmcv's CPU NMS and RoIAlign take fp32 only."""
    import torch

    def run(inputs):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            feats = extract_feat(inputs)
        return tuple(feat.float() for feat in feats)

    return run


def worker_det(job: dict) -> dict:
    """Per-image latency of mmdet's ``inference_detector`` (pipeline + model) under RCNN score
    thresholds: 'config' (the config's) and 'thr0' (0: 100 detections per image, as a trained
    model gives), with the backbone + neck time of each run; the backbone alone, the MACs of
    backbone and backbone + neck, this CPU's matmul peak; with ``bf16``, the per-image latency
    (under the last of ``thresholds``) and backbone + neck alone with the backbone and neck
    under bf16 autocast.

    Job keys: ``config`` (see :func:`.builders.build_detector`), ``size`` ([h, w]), ``thresholds``
    (labels), ``bf16`` (bool), ``repeats``, ``warmup``, ``arch``.
    """
    import torch
    from mmdet.apis import inference_detector

    from cvt_mm.macs import count_macs
    memory = MemoryTracker()
    model, image = build_detector(job['config'], job['arch'], job['size'])
    memory.built()
    result = dict(config_score_thr=float(model.roi_head.test_cfg.score_thr),
                  matmul_peak_gflops=matmul_peak_gflops())
    last = {}
    # Backbone + neck timed inside each run, so that the rest of a run (pipeline, RPN, RoI
    # heads) is its total minus its own feature time, not minus a separate measurement.
    extract_feat = model.extract_feat
    feat_times: List[float] = []

    def timed_extract_feat(inputs):
        start = time.perf_counter()
        feats = extract_feat(inputs)
        feat_times.append(time.perf_counter() - start)
        return feats

    def run():
        last['detections'] = len(inference_detector(model, image).pred_instances)

    model.extract_feat = timed_extract_feat
    for label in job['thresholds']:
        if label == 'thr0':
            model.roi_head.test_cfg.score_thr = 0.0
        times = timed(run, job['repeats'], job['warmup'])
        result[label] = dict(times=times, detections=last['detections'],
                             extract_feat_times=feat_times[-len(times):])
    model.extract_feat = extract_feat
    # The backbone alone, on the padded input the detector sees.
    data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]),
                                   False)
    inputs = data['inputs']
    with torch.no_grad():
        result['backbone_times'] = timed(lambda: model.backbone(inputs), job['repeats'],
                                         job['warmup'])
    result.update(memory.summary())
    if job.get('bf16'):
        fp32_extract_feat = model.extract_feat
        model.extract_feat = bf16_features(fp32_extract_feat)  # at the last threshold
        result['bf16'] = dict(times=timed(run, job['repeats'], job['warmup']),
                              detections=last['detections'])
        with torch.no_grad():
            result['bf16_extract_feat_times'] = timed(lambda: model.extract_feat(inputs),
                                                      job['repeats'], job['warmup'])
        model.extract_feat = fp32_extract_feat
    result['matmul_peak_after'] = matmul_peak_gflops()
    result['input_shape'] = list(inputs.shape)
    with torch.no_grad():
        result['macs_backbone'] = count_macs(model.backbone, (inputs,)).total()
        result['macs_backbone_neck'] = count_macs(
            torch.nn.Sequential(model.backbone, model.neck), (inputs,)).total()
    return result


def stage_modules(backbone) -> Dict[str, object]:
    """The backbone's stages by name: CvT's and mmdet's Swin's ``stages``, a ResNet's
    ``res_layers``."""
    if hasattr(backbone, 'stages'):
        return {f'stage {i + 1}': stage for i, stage in enumerate(backbone.stages)}
    return {name: getattr(backbone, name) for name in backbone.res_layers}


class StageTimer:
    """Forward and backward wall time of each stage of a backbone, from module hooks: a stage's
    backward runs from its output's gradient arriving to its input's gradient leaving (the
    autograd engine runs one stage's backward at a time)."""

    def __init__(self, stages: Dict[str, object]):
        self.times = {name: dict(forward=0.0, backward=0.0) for name in stages}
        self.started: Dict[tuple, float] = {}
        self.handles = []
        for name, stage in stages.items():
            self.handles += [
                stage.register_forward_pre_hook(self._start(name, 'forward')),
                stage.register_forward_hook(self._stop(name, 'forward')),
                stage.register_full_backward_pre_hook(self._start(name, 'backward')),
                stage.register_full_backward_hook(self._stop(name, 'backward'))]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _start(self, name, phase):
        def hook(*_):
            self.started[name, phase] = time.perf_counter()
        return hook

    def _stop(self, name, phase):
        def hook(*_):
            self.times[name][phase] += time.perf_counter() - self.started.pop((name, phase))
        return hook


def worker_det_train(job: dict) -> dict:
    """One Mask R-CNN training step per image: the detector in train mode, one image with
    ``boxes`` ground-truth boxes and masks (:func:`.builders.detection_training_batch`),
    forward with losses, backward, the config's optimizer step. Times and peak RSS (on CUDA,
    peak device memory); with ``profile``, each backbone stage's forward and backward time
    and the backward's top operators (:func:`profile_training_step`), and the backbone's
    arithmetic against this CPU's matmul peak (:func:`backbone_arithmetic`).

    Job keys: ``config`` and ``backbone_options`` (see :func:`.builders.build_detector`),
    ``size`` ([h, w]), ``boxes``, ``device`` (default 'cpu'), ``profile`` (bool), ``top``,
    ``kernel_repeats`` (each attention call's timed repeats when profiling),
    ``repeats``, ``warmup``, ``arch``.
    """
    import torch
    from mmengine.optim import build_optim_wrapper

    from cvt_mm import mmcv_ext_fallback

    from .timing import device_timed, peak_memory_mb, reset_peak_memory
    device = torch.device(job.get('device', 'cpu'))
    memory = MemoryTracker()
    model, image = build_detector(job['config'], job['arch'], job['size'],
                                  job.get('backbone_options'))
    model.to(device).train()
    optim_wrapper = build_optim_wrapper(model, model.cfg.optim_wrapper)
    batch = detection_training_batch(model, image, job['boxes'])
    memory.built()
    reset_peak_memory(device)

    def step():
        losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)

    result = dict(times=device_timed(step, device, job['repeats'], job['warmup']),
                  optimizer=type(optim_wrapper.optimizer).__name__,
                  input_shape=list(batch['inputs'].shape), **memory.summary())
    result['peak_device_mb'] = peak_memory_mb(device)
    result['roi_ops'] = ("torchvision's, standing in for mmcv's compiled ops "
                         '(cvt_mm.mmcv_ext_fallback)' if mmcv_ext_fallback.installed()
                         else "mmcv's compiled ops")
    if job.get('profile'):
        result.update(profile_training_step(model, batch, optim_wrapper, job.get('top', 10)))
        result.update(backbone_arithmetic(model.backbone, batch['inputs']))
        result['attention_kernels'] = attention_kernels(model.backbone, batch['inputs'],
                                                        job['kernel_repeats'])
        optim_wrapper.zero_grad()
    return result


def backbone_arithmetic(backbone, inputs) -> dict:
    """The backbone's multiply-accumulates in one training step (:func:`cvt_mm.macs.
    training_macs`) and this CPU's matmul peak: at that peak, the least time the step's
    backbone could take."""
    from cvt_mm.macs import training_macs
    peak = matmul_peak_gflops()
    macs = training_macs(backbone, inputs)
    return dict(backbone_training_macs=macs, matmul_peak_gflops=peak,
                matmul_peak_after=matmul_peak_gflops())


def attention_kernels(backbone, inputs, repeats: int = 3) -> List[dict]:
    """Each distinct ``scaled_dot_product_attention`` call of one training forward of
    ``backbone``, run alone on that call's own tensors (their shapes and strides): forward and
    backward seconds per call (medians of ``repeats`` after a warm-up), the multiply-accumulates
    the CPU flash kernel does each way (:mod:`cvt_mm.macs`) and how many such calls the step
    makes. Empty for a backbone that does not call it (Swin-T multiplies its own)."""
    import statistics

    import torch
    import torch.nn.functional as F

    from cvt_mm.macs import cpu_flash_attention_backward_flops, cpu_flash_attention_flops

    calls: Dict[tuple, dict] = {}

    class RecordAttention(torch.overrides.TorchFunctionMode):

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.scaled_dot_product_attention:
                query, key, value = args[:3]
                mask = kwargs.get('attn_mask')
                shapes = (query.shape, key.shape, None if mask is None else mask.shape)
                calls.setdefault(shapes, dict(
                    tensors=[t.detach() for t in (query, key, value)], calls=0,
                    mask=None if mask is None else mask.detach(), scale=kwargs.get('scale')))
                calls[shapes]['calls'] += 1
            return func(*args, **kwargs)

    with RecordAttention():
        backbone(inputs)
    kernels = []
    for call in calls.values():
        query, key, value = (t.requires_grad_() for t in call['tensors'])
        forward_times, backward_times = [], []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=call['mask'],
                                                 scale=call['scale'])
            middle = time.perf_counter()
            torch.autograd.grad(out, (query, key, value), torch.ones_like(out))
            forward_times.append(middle - start)
            backward_times.append(time.perf_counter() - middle)
        shapes = [list(t.shape) for t in (query, key, value)]
        kernels.append(dict(
            query=shapes[0], key=shapes[1], calls=call['calls'], masked=call['mask'] is not None,
            forward_s=statistics.median(forward_times[1:]),
            backward_s=statistics.median(backward_times[1:]),
            forward_macs=cpu_flash_attention_flops(*shapes) // 2,
            backward_macs=cpu_flash_attention_backward_flops(list(out.shape), *shapes) // 2))
    return kernels


def profile_training_step(model, batch: dict, optim_wrapper, top: int) -> dict:
    """Two more training steps: one timing each backbone stage's forward and backward (module
    hooks), one with its backward under torch.profiler: the ``top`` operators by self CPU
    time and their share of the backward's."""
    import torch

    stage_timer = StageTimer(stage_modules(model.backbone))
    inputs = batch['inputs'].clone().requires_grad_(True)
    loss, _ = model.parse_losses(model(**dict(batch, inputs=inputs), mode='loss'))
    start = time.perf_counter()
    loss.backward()
    backward_time = time.perf_counter() - start
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    stage_timer.remove()
    loss, _ = model.parse_losses(model(**batch, mode='loss'))
    with torch.profiler.profile() as prof:
        loss.backward()
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    # autograd's per-node wrappers hold their operators' time, not their own.
    events = [e for e in prof.key_averages()
              if not e.key.startswith('autograd::engine::evaluate_function')]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return dict(stage_times=stage_timer.times, backward_time=backward_time,
                backward_ops=[dict(op=e.key, ms=e.self_cpu_time_total / 1e3, calls=e.count,
                                   share=e.self_cpu_time_total / total)
                              for e in events[:top]])


def worker_profile(job: dict) -> dict:
    """torch.profiler's top operators (self CPU time) of one eval forward after a warm-up.

    Job keys: ``impl`` ('cvt_mm' or 'hf'), ``featmap`` (False: the classifier, True: the
    backbone's maps), ``batch``, ``size`` ([h, w]), ``top`` (how many operators), ``arch``.
    """
    import torch

    if job['impl'] == 'hf' and not job['featmap']:  # CvtModel has no cls-token output
        from cvt_mm.testing import build_hf_and_cvt_mm
        run = build_hf_and_cvt_mm(arch_settings(job['arch']), 1000)[0]
    else:
        _, run = build_backbone(job['impl'], job['arch'], featmap=job['featmap'])
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


WORKERS: Dict[str, Callable[[dict], dict]] = dict(
    cls=worker_cls, backbone=worker_backbone, compile=worker_compile, train=worker_train,
    cls_train=worker_cls_train,
    det=worker_det, det_train=worker_det_train, profile=worker_profile)
