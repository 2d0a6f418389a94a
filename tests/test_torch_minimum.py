"""setup.py's ``torch>=X`` is at least the release of every torch API the package calls.

Each row of :data:`TORCH_APIS` names an API, the torch release that introduced it, and where
the package calls it (a pattern that must match that file), so that lowering the minimum below
what the code needs, or a row that no longer describes the code, fails here.
"""
import re

import pytest
from helpers import REPO_ROOT

# A call's arguments, which may hold one level of parentheses.
ARGUMENTS = r'(?:[^()]|\([^()]*\))*'
# (API, the torch release that introduced it, the file that calls it, a pattern of the call)
TORCH_APIS = [
    # `import cvt_mm` registers a (callable, 'module.name') pair; torch 2.4 and 2.5 accept the
    # list, then fail every weights_only load on the pair ('tuple' has no '__module__').
    ("torch.serialization.add_safe_globals with (global, 'module.name') pairs", '2.6',
     'cvt_mm/engine/safe_loading.py', r"\(_history_buffer_statistic, 'builtins\.getattr'\)"),
    ('torch.export.Dim.DYNAMIC (tools/deployment/pytorch2onnx.py --dynamo --dynamic)', '2.6',
     'cvt_mm/deploy/onnx_export.py', r'torch\.export\.Dim\.DYNAMIC'),
    ('torch.onnx.export(..., dynamo=...)', '2.5', 'cvt_mm/deploy/onnx_export.py',
     rf'torch\.onnx\.export\({ARGUMENTS}dynamo=dynamo'),
    ('torch.is_autocast_enabled(device_type)', '2.4', 'cvt_mm/models/backbones/cpu_kernels.py',
     r"torch\.is_autocast_enabled\('cpu'\)"),
    ('torch.compiler.is_compiling()', '2.3', 'cvt_mm/models/backbones/cpu_kernels.py',
     r'torch\.compiler\.is_compiling\(\)'),
    ('torch.amp.GradScaler(device_type)', '2.3', 'tools/benchmarking/device_workers.py',
     r'torch\.amp\.GradScaler\(device\.type'),
    ('F.scaled_dot_product_attention(..., scale=...)', '2.1', 'cvt_mm/models/backbones/cvt.py',
     rf'F\.scaled_dot_product_attention\({ARGUMENTS}scale=self\.scale\)'),
]


def version(text: str) -> tuple:
    return tuple(int(part) for part in text.split('.'))


def declared_torch_minimum() -> str:
    found = re.findall(r"'torch>=([0-9.]+)'", (REPO_ROOT / 'setup.py').read_text())
    assert len(found) == 1, f"setup.py should require torch as 'torch>=X' once, found {found}"
    return found[0]


@pytest.mark.parametrize('api, introduced, path, pattern', TORCH_APIS,
                         ids=[row[0] for row in TORCH_APIS])
def test_the_torch_minimum_covers_each_api_the_code_calls(api, introduced, path, pattern):
    assert re.search(pattern, (REPO_ROOT / path).read_text()), (
        f'{path} no longer calls {api}: update this table')
    minimum = declared_torch_minimum()
    assert version(minimum) >= version(introduced), (
        f"setup.py requires torch>={minimum}, but {path} calls {api}, new in torch {introduced}")
