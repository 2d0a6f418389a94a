"""Golden outputs of the backbone: every path (train and eval, CPU kernels on and off, windows,
pooled keys, dropout, other activations and projections, ``with_cp``) against what the code of
commit b9ffdfc computed, saved in ``tests/data/cvt_golden.pt``.

Written by ``python tests/test_models/test_golden.py --write`` on an AMD EPYC (AVX2, no
AVX-512) with two threads and torch 2.14.1. Where the arithmetic is the same as then
(``ORDER_KEPT``), the outputs are bit for bit those of that run on such a machine, and the test
asserts so there (:func:`on_the_writing_machine`); elsewhere it allows a float32 rounding, since
another CPU's kernels round differently. The tolerance of each case is its own (``CASES``); a
case that changed on purpose says why.

Large tensors are kept as digests (:func:`digest`): four projections on fixed random directions,
the norm and the largest magnitude, so that one wrong element moves them.
"""
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mmengine.logging import MMLogger

from cvt_mm.models.backbones.cvt import CvT
from cvt_mm.testing import FAST_TEST_ARCH, randomize_biases, randomize_norms

GOLDEN = Path(__file__).resolve().parents[1] / 'data' / 'cvt_golden.pt'


@dataclass(frozen=True)
class Tolerance:
    relative: float  # to a tensor's norm
    bit_for_bit_on_the_writing_machine: bool


# The arithmetic of the golden run in the same order: bit for bit on its machine, a float32
# rounding on another CPU's kernels.
ORDER_KEPT = Tolerance(1e-5, bit_for_bit_on_the_writing_machine=True)

WINDOWS_AND_POOLED_KEYS = dict(out_type='featmap', out_indices=(0, 1, 2), window_size=[8, 4, 0],
                               pool_kv=[1, 2, 1], drop_path_rate=0.2)
# The plain modules where b9ffdfc ran its kernels' arithmetic: the MLP's QuickGELU no longer
# folded into fc1 and fc2 (two scalings of the hidden activations instead), k and v projected
# by two linear layers instead of one batched matmul. A float32 rounding of the reordered sums.
REORDERED = Tolerance(1e-5, bit_for_bit_on_the_writing_machine=False)
# name: (arch, CvT arguments, train mode, gradients, CPU kernels, MLP chunk rows, batch, image
# side, tolerance)
CASES = {
    'tiny_cls_train': ('tiny', {}, True, True, True, 2048, 2, 64, ORDER_KEPT),
    'tiny_cls_train_plain': ('tiny', {}, True, True, False, 2048, 2, 64, REORDERED),
    'tiny_cls_eval': ('tiny', {}, False, False, True, 30, 2, 64, ORDER_KEPT),
    'tiny_cls_eval_plain': ('tiny', {}, False, False, False, 30, 2, 64, REORDERED),
    'tiny_cls_eval_grad': ('tiny', {}, False, True, True, 30, 2, 64, ORDER_KEPT),
    'tiny_featmap_train': ('tiny', WINDOWS_AND_POOLED_KEYS, True, True, True, 100, 2, 80,
                           ORDER_KEPT),
    'tiny_featmap_train_plain': ('tiny', WINDOWS_AND_POOLED_KEYS, True, True, False, 100, 2, 80,
                                 REORDERED),
    # With dropout the CPU kernels step aside for the MLP, which b9ffdfc ran folded.
    'tiny_dropout_train': ('tiny', dict(drop_rate=0.1, drop_path_rate=0.1), True, True, True,
                           2048, 2, 64, REORDERED),
    'tiny_gelu_train': ('tiny', dict(act_cfg=dict(type='GELU')), True, True, True, 2048, 2, 64,
                        ORDER_KEPT),
    'tiny_avg_train': ('tiny', dict(attn_method='avg'), True, True, True, 2048, 2, 64,
                       ORDER_KEPT),
    'tiny_linear_train': ('tiny', dict(attn_method='linear', out_type='featmap',
                                       out_indices=(1, 2)), True, True, True, 2048, 2, 64,
                          ORDER_KEPT),
    # b9ffdfc updated each BatchNorm twice per step under with_cp; its buffers are now those of
    # tiny_cls_train (test_with_cp_keeps_the_batch_norm_statistics_of_one_step).
    'tiny_with_cp_train': ('tiny', dict(with_cp=True), True, True, True, 2048, 2, 64,
                           ORDER_KEPT),
    # A batch of 1 on two threads: query chunks in stages 0 and 2 (one and three heads).
    'tiny_cls_train_batch1': ('tiny', {}, True, True, True, 2048, 1, 64, ORDER_KEPT),
    'tiny_featmap_train_batch1': ('tiny', WINDOWS_AND_POOLED_KEYS, True, True, True, 100, 1, 80,
                                  ORDER_KEPT),
    'cvt13_cls_train': ('13', {}, True, True, True, 2048, 2, 96, ORDER_KEPT),
    'cvt13_cls_train_plain': ('13', {}, True, True, False, 2048, 2, 96, REORDERED),
    'cvt13_featmap_eval': ('13', dict(out_type='featmap', out_indices=(0, 1, 2)), False, False,
                           True, 2048, 2, 96, ORDER_KEPT),
}


def build(arch, **kwargs) -> CvT:
    torch.manual_seed(0)
    model = CvT(arch=FAST_TEST_ARCH if arch == 'tiny' else arch, **kwargs)
    model.init_weights()
    randomize_biases(model)
    return randomize_norms(model)


def digest(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    tensor = tensor.detach().double().flatten()
    directions = torch.randn(4, tensor.numel(), generator=generator, dtype=torch.float64)
    return torch.cat((directions @ tensor, tensor.norm().view(1), tensor.abs().max().view(1)))


def stacked(named: dict) -> dict:
    return dict(names=list(named), values=torch.stack(list(named.values())) if named
                else torch.zeros(0, 6, dtype=torch.float64))


def run_case(arch, kwargs, train, grad, kernels, chunk_rows, batch, side) -> dict:
    """The outputs, gradients (of a fixed random projection of the outputs) and buffers of one
    case, small outputs whole and the rest as digests."""
    kernels = dict(mlp_chunk_rows=chunk_rows) if kernels else False
    model = build(arch, cpu_kernels=kernels, **kwargs).train(train)
    torch.manual_seed(1)
    x = torch.randn(batch, 3, side, side, requires_grad=grad)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the query chunks follow the thread count
    try:
        with torch.set_grad_enabled(grad):
            torch.manual_seed(2)
            outs = model(x)
        generator = torch.Generator().manual_seed(6)
        result = dict(outputs=[out.detach() if out.numel() <= 4096 else digest(out, generator)
                               for out in outs])
        if grad:
            generator = torch.Generator().manual_seed(3)
            loss = sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outs)
            loss.backward()
            generator = torch.Generator().manual_seed(4)
            result['input_grad'] = digest(x.grad, generator)
            result['grads'] = stacked({name: digest(param.grad, generator)
                                       for name, param in model.named_parameters()
                                       if param.grad is not None})
    finally:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(5)
    result['buffers'] = stacked({name: digest(buffer, generator)
                                 for name, buffer in model.named_buffers()})
    return result


def assert_matches(expected, actual, tolerance: float, what: str, floor: float = 0.) -> None:
    """``actual`` within ``tolerance`` of ``expected``, relative to the larger of its norm (its
    largest magnitude for a whole tensor) and ``floor``."""
    if expected.dtype == torch.float64:  # a digest: every entry moves by at most the error's norm
        bound = 4 * tolerance * max(expected[4].item(), floor) + 1e-12
        worst = (actual - expected).abs().max().item()
        assert worst <= bound, f'{what}: digest moved by {worst:.3g} (bound {bound:.3g})'
    else:
        scale = max(expected.abs().max().item(), floor)
        torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale,
                                   msg=lambda m: f'{what}: {m}')


def compare(expected: dict, actual: dict, tolerance: float, name: str) -> None:
    assert len(actual['outputs']) == len(expected['outputs'])
    for i, (a, b) in enumerate(zip(expected['outputs'], actual['outputs'])):
        assert_matches(a, b, tolerance, f'{name} output {i}')
    for key in ('grads', 'buffers'):
        if key in expected:
            assert actual[key]['names'] == expected[key]['names'], f'{name} {key}'
            norms = expected[key]['values'][:, 4]
            # Some gradients are zero but for rounding (k's biases: softmax ignores a constant
            # added to every key); their rounding is that of the terms that cancel, of the size
            # of the other gradients.
            floor = 0.1 * norms.median().item() if len(norms) else 0.
            for param, a, b in zip(expected[key]['names'], expected[key]['values'],
                                   actual[key]['values']):
                assert_matches(a, b, tolerance, f'{name} {key} {param}', floor)
    if 'input_grad' in expected:
        assert_matches(expected['input_grad'], actual['input_grad'], tolerance,
                       f'{name} input grad')


def on_the_writing_machine() -> bool:
    """The CPU family, vector extensions and torch of the run that wrote the golden file: the
    kernels, and so the order of every sum, are then those of that run."""
    cpuinfo = Path('/proc/cpuinfo')
    text = cpuinfo.read_text() if cpuinfo.exists() else ''
    flags = set(next((line.split(':', 1)[1].split() for line in text.splitlines()
                      if line.startswith('flags')), []))
    return (platform.machine() == 'x86_64' and 'AMD EPYC' in text and 'avx2' in flags
            and 'avx512f' not in flags and torch.__version__.split('+')[0] == '2.14.1')


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize('name', CASES)
def test_matches_golden(golden, name):
    *case, tolerance = CASES[name]
    expected = dict(golden[name])
    if name == 'tiny_with_cp_train':
        expected['buffers'] = golden['tiny_cls_train']['buffers']
    actual = run_case(*case)
    compare(expected, actual, tolerance.relative, name)
    if tolerance.bit_for_bit_on_the_writing_machine and on_the_writing_machine():
        assert bitwise_equal(expected, actual), f'{name}: not bit for bit on the writing machine'


def bitwise_equal(expected: dict, actual: dict) -> bool:
    pairs = list(zip(expected['outputs'], actual['outputs']))
    pairs += [(expected[key]['values'], actual[key]['values'])
              for key in ('grads', 'buffers') if key in expected]
    if 'input_grad' in expected:
        pairs.append((expected['input_grad'], actual['input_grad']))
    return all(torch.equal(a, b) for a, b in pairs)


if __name__ == '__main__':
    MMLogger.get_instance('mmengine').setLevel('ERROR')  # init_weights logs every parameter
    # --write: save the golden file; --exact: which cases this code reproduces bit for bit (on
    # the machine that wrote the file).
    if sys.argv[1:] == ['--write']:
        torch.save({name: run_case(*case[:-1]) for name, case in CASES.items()}, GOLDEN)
        print(f'wrote {GOLDEN}')
    elif sys.argv[1:] == ['--exact']:
        saved = torch.load(GOLDEN, weights_only=True)
        for name, case in CASES.items():
            print(name, 'bit for bit' if bitwise_equal(saved[name], run_case(*case[:-1]))
                  else 'differs')
