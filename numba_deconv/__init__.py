"""numba_deconv: exact, fast transposed convolution for NumPy, compiled with Numba.

Public names only; see ``conv_transpose`` for the operation and the README
for the semantics.
"""

from . import _cache
from ._version import __version__

_cache.install()  # before any kernel is decorated

from .cpu import launch as _launch  # noqa: E402

_launch.prefer_fork_safe_layer()  # before any parallel kernel runs

from . import compat  # noqa: E402  (kernels import after the cache locator)
from ._compiled import cache_info
from ._dispatch import precompile
from ._outputs import release_memory
from .api import conv, conv_transpose
from .explain import explain
from .grad import conv_transpose_weight_grad, conv_weight_grad
from .linalg import as_linear_operator
from .plans import Plan, plan

__all__ = ["conv_transpose", "conv", "conv_weight_grad", "conv_transpose_weight_grad",
           "plan", "Plan", "as_linear_operator", "explain", "cache_info", "precompile", "release_memory",
           "compat"]
