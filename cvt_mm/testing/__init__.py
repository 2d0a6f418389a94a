"""Reference models and small settings for tests, parity checks and benchmarks.

Nothing here is needed to train or run CvT; :mod:`.hf_reference` imports ``transformers`` (the
``tests`` / ``docs`` extras) only when one of its builders is called.
"""
from .hf_reference import (
                           build_hf_and_cvt_mm,
                           compare_with_hf,
                           random_hf_classifier,
                           randomize_biases,
                           randomize_norms,
)

# The arch of the fast tests and the benchmark's --quick run, built for speed, not to learn
# (the demo's, which learns the toy shapes, is demo_arch in configs/toy/_base_/shared.py).
# Three stages with a cls token in the last and the official kernels and strides: every code
# path of CvT-13 at a fraction of its cost. Depth i+1 in stage i also sidesteps an HF indexing
# bug (drop_path_rates[stage] over a list of `depth` entries) that breaks shallower stages.
FAST_TEST_ARCH = dict(embed_dims=[16, 32, 48], depths=[1, 2, 3], num_heads=[1, 2, 3])

__all__ = ['FAST_TEST_ARCH', 'build_hf_and_cvt_mm', 'compare_with_hf', 'random_hf_classifier',
           'randomize_biases', 'randomize_norms']
