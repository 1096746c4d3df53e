"""Keep NumPy's OpenBLAS single-threaded while our own threads run GEMMs.

The GEMM strategy runs one BLAS call per task in each of our worker
threads. A multi-threaded OpenBLAS would start its own pool on top of
ours, and its spinning threads starve the others on a small machine (seen
here: a 0.2 ms col2im took 28 ms right after a threaded matmul). So the
GEMM strategy asks for one BLAS thread while it runs and restores the
previous count afterwards.

Found through ctypes in the OpenBLAS that NumPy loaded (Linux, macOS and
Windows wheels bundle one). Where NumPy uses another BLAS nothing is
changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

# (prefix, suffix) of the symbol names OpenBLAS builds use.
_NAMINGS = (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", ""))

_lock = threading.Lock()
_users = 0
_saved = None
_controls = None


def _find_controls():
    """(get, set) functions of NumPy's OpenBLAS thread count, or None."""
    here = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*"))
    candidates += glob.glob(os.path.join(here, ".dylibs", "*openblas*"))
    candidates += glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*.dll"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _NAMINGS:
            getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


@contextlib.contextmanager
def single_threaded_blas():
    """Within the block NumPy's OpenBLAS uses one thread (re-entrant, thread-safe)."""
    global _users, _saved, _controls
    with _lock:
        if _controls is None:
            _controls = _find_controls() or ()
        if _controls and _users == 0:
            _saved = _controls[0]()
            _controls[1](1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _controls and _users == 0:
                _controls[1](_saved)
