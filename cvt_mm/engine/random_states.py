"""The global random number generators that training draws from: capturing, restoring and
seeding them together."""
import random
from typing import Sequence

import numpy as np
import torch


def capture_random_states(cuda: bool = True) -> dict:
    """The states of Python's ``random``, numpy's global generator and torch's CPU (and, once
    initialised and unless ``cuda=False``, CUDA) generators."""
    states = dict(python=random.getstate(), numpy=np.random.get_state(),
                  torch=torch.get_rng_state())
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    """Put back what :func:`capture_random_states` captured."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def seed_random_states(key: Sequence[int], cuda: bool = True) -> None:
    """Seed all of them (torch's on every device, unless ``cuda=False``: its CPU generator
    only) from ``key``, a sequence of non-negative integers, through numpy's
    ``SeedSequence``: distinct keys give independent streams."""
    python_seed, numpy_seed, torch_seed = np.random.SeedSequence(
        [int(part) for part in key]).generate_state(3)
    random.seed(int(python_seed))
    np.random.seed(numpy_seed)
    if cuda:
        torch.manual_seed(int(torch_seed))
    else:
        torch.default_generator.manual_seed(int(torch_seed))
