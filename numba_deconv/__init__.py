"""numba_deconv: exact, fast transposed convolution for NumPy, compiled with Numba.

Public names only; see ``conv_transpose`` for the operation and the README
for the semantics.
"""

from . import compat
from ._compiled import cache_info
from ._dispatch import precompile
from ._outputs import release_memory
from .api import conv_transpose
from .explain import explain

__all__ = ["conv_transpose", "explain", "cache_info", "precompile", "release_memory",
           "compat"]
__version__ = "0.1.0"
