"""Let mmengine resume Runner checkpoints on torch >= 2.6 without unsafe unpickling.

torch 2.6 made ``torch.load`` default to ``weights_only=True``; mmengine 0.10.7 calls it without
the argument, and a Runner checkpoint stores, besides tensors, the message hub's
``HistoryBuffer`` objects, numpy arrays/scalars/dtypes, and (inside each buffer's state)
``getattr(HistoryBuffer, 'min')``-style references to its statistics methods. Rather than turn
safe loading off, we allowlist exactly those types. The one ``getattr`` is replaced by a
restricted version that resolves only HistoryBuffer's registered statistics methods, so a
crafted file cannot reach anything else. Every ``torch.load`` (pretrained weights included) stays
on the safe unpickler.
"""
import importlib
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# Registered by every HistoryBuffer's __init__; a fresh process may not have built one yet.
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_statistic(owner, name: str):
    """``getattr`` as it may appear in a checkpoint: HistoryBuffer statistics methods only."""
    if owner is HistoryBuffer and (name in _BUILTIN_STATISTICS
                                   or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}): checkpoints may only reference '
        'HistoryBuffer statistics methods')


def _numpy_globals():
    """The numpy callables that pickle arrays, scalars and dtypes (numpy 1.x and 2.x names)."""
    if np.lib.NumpyVersion(np.__version__) < '2.0.0':
        multiarray = importlib.import_module('numpy.core.multiarray')
    else:
        multiarray = importlib.import_module('numpy._core.multiarray')
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles a dtype by its concrete class (e.g. numpy.dtypes.Float64DType).
    found += [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG']
    return found


def runner_checkpoint_safe_globals():
    return [HistoryBuffer, *_numpy_globals(),
            (_history_buffer_statistic, 'builtins.getattr')]


def allow_runner_checkpoints() -> None:
    """Register the types of mmengine Runner checkpoints with torch's safe unpickler."""
    torch.serialization.add_safe_globals(runner_checkpoint_safe_globals())
