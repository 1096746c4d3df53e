"""NumPy's BLAS held to one thread while our own threads run BLAS tasks.

The BLAS kernel runs one BLAS product per task in each of our worker
threads. A multi-threaded BLAS would start its own pool on top of ours,
and its spinning threads starve ours on a small machine, so BLAS is asked
for one thread while the tasks run and given its count back afterwards.
threadpoolctl (an optional dependency, as used by scikit-learn) finds the
BLAS that NumPy loaded, whichever it is; without it the tasks run on the
calling thread alone and BLAS keeps its own threads.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_users = 0
_saved: list = []
_controllers = None


def blas_controllers() -> tuple:
    """threadpoolctl's controllers of the loaded BLAS libraries; empty
    without threadpoolctl."""
    global _controllers
    if _controllers is None:
        try:
            import threadpoolctl
        except ImportError:
            _controllers = ()
        else:
            _controllers = tuple(threadpoolctl.ThreadpoolController()
                                 .select(user_api="blas").lib_controllers)
    return _controllers


@contextlib.contextmanager
def single_threaded_blas():
    """Within the block BLAS uses one thread (re-entrant, thread-safe: the
    count is restored when the last of concurrent users leaves)."""
    global _users
    with _lock:
        if _users == 0:
            _saved[:] = [lib.get_num_threads() for lib in blas_controllers()]
            for lib in blas_controllers():
                lib.set_num_threads(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for lib, count in zip(blas_controllers(), _saved):
                    lib.set_num_threads(count)
