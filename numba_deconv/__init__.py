"""numba_deconv: exact, fast transposed convolution for NumPy, compiled with Numba.

Public names only; see ``conv_transpose`` for the operation and the README
for the semantics.
"""

from ._dispatch import cache_info, precompile
from .api import conv_transpose

__all__ = ["conv_transpose", "cache_info", "precompile"]
__version__ = "0.1.0"
