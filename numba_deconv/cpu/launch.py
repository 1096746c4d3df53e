"""Where every parallel CPU kernel starts: safe from any number of Python
threads on any Numba threading layer, and stopped by Ctrl-C within a task.

Threads. Numba's ``workqueue`` layer aborts the process when two threads
launch parallel kernels at once; ``tbb`` and ``omp`` do not. On
``workqueue`` the launches here take one process-wide lock, so Python
threads queue for the thread pool instead of crashing it. Which layer runs
is decided by :func:`prefer_fork_safe_layer` at import.

Interrupts. A compiled loop never returns to the interpreter, so a SIGINT
waits for the whole call. A call long enough to notice (see
``config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS``) made on the main thread
therefore runs on a launcher thread (the kernels release the GIL) while the
main thread waits, where Python can raise ``KeyboardInterrupt``. It then
sets the kernel's ``cancel`` flag, which every task checks before it
starts, waits for the tasks under way (each is a small share of the call),
and re-raises. What the cancelled call was writing (its ``out=``) is left
partially written.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError

import numba
import numpy as np

from .. import config

_LOCK = threading.RLock()
_layer_is_workqueue = None
_launcher = None

#: The flag of a call that cannot be cancelled (nothing ever sets it).
NEVER = np.zeros(1, np.uint8)
#: How often the main thread looks for a pending Ctrl-C while a kernel runs.
_SIGNAL_POLL_SECONDS = 0.02


def prefer_fork_safe_layer() -> None:
    """Ask Numba for a fork-safe threading layer unless the user chose one.

    Numba's default order takes GNU OpenMP on Linux where TBB is missing,
    and GNU OpenMP kills a child forked after the parent ran a parallel
    kernel (``multiprocessing``'s default start method on Linux before
    Python 3.14). ``"forksafe"`` takes TBB where it is installed, else
    ``workqueue``; a layer named by ``NUMBA_THREADING_LAYER`` or set in
    ``numba.config`` before import is kept.
    """
    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"


def _serialised() -> bool:
    """Whether launches must take the lock: the layer is ``workqueue``
    (known once the layer is loaded; loaded here on first use)."""
    global _layer_is_workqueue
    if _layer_is_workqueue is None:
        try:
            from numba.np.ufunc import parallel
            parallel._launch_threads()
            _layer_is_workqueue = numba.threading_layer() == "workqueue"
        except Exception:  # internals that moved: be safe
            _layer_is_workqueue = True
    return _layer_is_workqueue


def serialised():
    """A context for code that launches parallel kernels directly: the
    process-wide launch lock on ``workqueue``, else nothing."""
    return _LOCK if _serialised() else contextlib.nullcontext()


def parallel(kernel, *args, multiply_adds: int = 0):
    """``kernel(*args, cancel)``: serialised where the threading layer
    needs it, and stoppable with Ctrl-C when the call has at least
    ``config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS`` multiply-adds and runs on
    the main thread (the only one Python delivers signals to)."""
    with serialised():
        if (multiply_adds < config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS
                or threading.current_thread() is not threading.main_thread()):
            return kernel(*args, NEVER)
        return _interruptible(kernel, args)


def _interruptible(kernel, args):
    global _launcher
    if _launcher is None:
        _launcher = ThreadPoolExecutor(1, thread_name_prefix="numba_deconv-launch")
    cancel = np.zeros(1, np.uint8)
    running = _launcher.submit(kernel, *args, cancel)
    try:
        # A SIGINT may land on any thread (the launcher, Numba's workers),
        # which wakes no waiting main thread: look for it every so often.
        while True:
            try:
                return running.result(timeout=_SIGNAL_POLL_SECONDS)
            except TimeoutError:
                continue
    except KeyboardInterrupt:
        cancel[0] = 1
        while True:  # the tasks under way finish; a second Ctrl-C cannot orphan them
            try:
                running.exception()
                break
            except KeyboardInterrupt:
                continue
        raise
