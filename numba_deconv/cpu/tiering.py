"""Cold start: compute with the baseline kernel while the tuned one compiles.

The first call that needs a tuned kernel which is neither loaded in this
process nor in Numba's on-disk cache would wait seconds for it to compile.
Where :mod:`.baseline` can stand in for that kernel (the row, plane,
phase-tile, columns and tap-rows kernels, ``conv``'s kernels and the weight
gradients', real data (complex too for the row and plane kernels, and
without NaN for ``conv``'s plane kernels), calls of
at most ``config.BASELINE_MAX_MULTIPLY_ADDS``, for the phase tiles,
``conv``'s tiles and the weight gradients
``config.BASELINE_TILES_MAX_MULTIPLY_ADDS``), the call runs the baseline
instead, which compiles in 0.9-1.3 s (the tiles: 11-19 s), and a helper
process compiles the tuned kernel into the on-disk cache. Complex calls on
the real views of their arrays have a baseline of their own
(:func:`views_stand_in`); the BLAS route compiles nothing meanwhile: NumPy
folds its columns (:func:`folds_by_numpy`). Each later call
looks whether the helper is done; once it is, the tuned kernel is loaded
from the cache and runs from then on. The baseline sums every output exactly
as the kernel it stands in for, so the switch changes no bit of any result.

Channels last, the kernels of depthwise calls (:mod:`.depthwise_last`) and
of calls with one or a few taps per output phase (:mod:`.one_tap_last`)
compile the same way on the first call that would run them: until the
helper is done, the route's own kernel computes the call, with the same
bits.

Every helper compiles the launcher's polls first (:func:`.launch.poll_signatures`,
0.3 s), which the team of threads that runs parallel calls needs: until
they are on disk, the pool lends the threads (:func:`polls_compiling`).

A helper process, not a thread: compiling holds Numba's compiler lock and
mostly the GIL for seconds, which would stall this process's other first
calls and Python code; a helper does not, and it finishes filling the
cache even when this process ends first (the next process then loads the
tuned kernel). Without a writable on-disk cache, where ``sys.executable``
is not a Python interpreter (an application embedding Python, a frozen
one), or with ``NUMBA_DECONV_BACKGROUND_COMPILE=0``, kernels compile in the
calling thread as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time

import numpy as np

from .. import _compiled, config
from .baseline import (COLUMNS, CONV, ORDERS, PLANES, ROWS, TILES, columns_in_order, conv_in_order,
                       conv_in_order_complex, gather_in_order, tiles_in_order,
                       tiles_in_registers, views_in_order, weight_grad_in_order)
from . import launch as _launcher
from . import simd
from ._blas import run_blas
from .launch import parallel, poll_signatures

_log = logging.getLogger("numba_deconv")

# (kernel, dtype name) -> the helper process compiling it
_helpers: dict = {}

# The helper compiles this very package, whichever way this process found
# it: its directory joins the path where missing (prepending a
# site-packages that is already there could shadow the standard library),
# and a different numba_deconv found first compiles nothing.
_HELPER_SOURCE = """
import os, sys
kernel, dtype, root = sys.argv[1:]
if root not in sys.path:
    sys.path.insert(0, root)
import numba_deconv
if os.path.dirname(os.path.dirname(os.path.abspath(numba_deconv.__file__))) == root:
    from numba_deconv.cpu import driver
    driver.compile_kernel("team_polls", "int64")  # first: see polls_compiling
    driver.compile_kernel(kernel, dtype)
"""


#: The orders whose baseline is a kernel of its own, and its name.
_OWN_KERNELS = {TILES: ("baseline_tiles", tiles_in_order),
                COLUMNS: ("baseline_columns", columns_in_order),
                CONV: ("baseline_conv", conv_in_order)}


def stand_in(kernel: str, key: tuple, launch, x, w, bias, out, compile_kernel,
             kernel_signatures) -> bool | None:
    """Run the baseline in ``kernel``'s stead when ``kernel`` (the variant
    ``key``) would have to compile now and the baseline may stand in;
    ``compile_kernel`` and ``kernel_signatures`` are the backend's.

    Returns None where the caller must run ``kernel`` itself (compiled, on
    disk, or not one the baseline stands in for), else what ``kernel``'s
    launcher would: True, or False where the phase tiles would refuse
    (weights that are not finite) and the fallback must run.
    """
    if kernel == "blas":
        if not folds_by_numpy(x, w, bias, kernel_signatures):
            return None
        return run_blas(x, w, bias, out, launch, by_numpy=True)
    order = ORDERS.get(kernel)
    most = (config.BASELINE_TILES_MAX_MULTIPLY_ADDS if kernel in ("phase_tiles", "conv_tiles")
            else config.BASELINE_MAX_MULTIPLY_ADDS)
    if not (order is not None and launch.multiply_adds <= most):
        return None
    # Complex data: the row and plane orders as it is; conv's (its plane
    # kernels) where no input holds a NaN, as the element loops there and
    # in the baseline pick between two NaNs each their own way.
    if not (x.dtype.kind == "f" or order in (ROWS, PLANES)
            or (order == CONV and _nan_free(x, w, bias))):
        return None
    if not compiling_in_helper(kernel, x.dtype, kernel_signatures, "the baseline kernel"):
        return None
    if order in (TILES, PLANES) and not np.isfinite(w).all():
        return False  # as the tiles and planes refuse: the fallback's turn
    arguments = (x, w, bias, out, launch.groups, launch.stride, launch.dilation, launch.pad)
    if order in _OWN_KERNELS:
        # Kernels of their own: a cold call of the row kernels compiles none.
        name, kernel_in_order = _OWN_KERNELS[order]
        if x.dtype.kind == "c":  # (conv's plane kernels)
            kernel_in_order = conv_in_order_complex
        if order == TILES and launch.multiply_adds >= config.BASELINE_REGISTERS_MIN_MULTIPLY_ADDS:
            name, kernel_in_order = "baseline_tiles_registers", tiles_in_registers
        _compiled.ensure(key[:5] + (name,), compile_kernel, name, x.dtype)
        parallel(kernel_in_order, *arguments, multiply_adds=launch.multiply_adds)
        return True
    _compiled.ensure(key[:5] + ("baseline",), compile_kernel, "baseline", x.dtype)
    parallel(gather_in_order, *arguments, order, multiply_adds=launch.multiply_adds)
    return True


def views_stand_in(kernel: str, key: tuple, launch, x, w, bias, out, channels_last: bool,
                   compile_kernel, kernel_signatures) -> bool:
    """Whether the baseline (:func:`.baseline.views_in_order`) computed a
    complex call on the real views of its arrays (:mod:`.real_views`) in
    the stead of ``kernel`` (the columns kernel or the tap rows; the
    variant ``key``), which would have to compile now: at most
    ``config.BASELINE_MAX_MULTIPLY_ADDS`` multiply-adds (``launch``, the
    real twin's, counts four a complex one). ``x`` (N, C_in, *I) and
    ``out`` (N, C_out, *O) complex, channels last (N, *I, C_in) where
    ``channels_last`` (NumPy moves the channels first and back: the
    transposing kernels would compile), ``w`` (C_in, C_out/groups, *k)
    complex and ``bias`` its real view. Not where one of them holds a NaN
    (:func:`_nan_free`: the kernels' folds add in scalars, the baseline in
    vectors, and which of two NaNs an add returns is the compiler's
    choice)."""
    real = out.real.dtype
    if not (launch.multiply_adds <= config.BASELINE_MAX_MULTIPLY_ADDS and _nan_free(x, w, bias)
            and compiling_in_helper(kernel, real, kernel_signatures, "the baseline kernel")):
        return False
    _compiled.ensure(key[:5] + ("baseline_views",), compile_kernel, "baseline_views", real)
    x_shape, w_shape, out_shape = launch.x_shape, launch.w_shape, launch.out_shape
    c_in, c_out = x_shape[1] // 2, out_shape[1] // 2
    if channels_last:
        x = np.moveaxis(x.reshape(x_shape[:1] + x_shape[2:] + (c_in,)), -1, 1)
    x_parts = np.ascontiguousarray(x).reshape((x_shape[0], c_in) + x_shape[2:]).view(real)
    w_parts = np.ascontiguousarray(w).reshape(
        (w_shape[0] // 2, w_shape[1] // 2) + w_shape[2:]).view(real)
    out_first = (np.empty((out_shape[0], c_out) + out_shape[2:], dtype=out.dtype)
                 if channels_last else out.reshape((out_shape[0], c_out) + out_shape[2:]))
    parallel(views_in_order, x_parts, w_parts, bias, out_first.view(real), launch.groups,
             launch.stride, launch.dilation, launch.pad, multiply_adds=launch.multiply_adds)
    if channels_last:
        out.reshape(out_shape[:1] + out_shape[2:] + (c_out,))[...] = np.moveaxis(out_first, 1, -1)
    return True


def folds_by_numpy(x, w, bias, kernel_signatures) -> bool:
    """Whether the BLAS route's columns may be folded by NumPy now
    (:func:`._blas.col2im_by_numpy`), while a helper compiles ``col2im``:
    its products need no compile (NumPy's BLAS computes them), and NumPy's
    fold adds the same terms in the same order, each add rounded the same.
    Not where ``x``, ``w`` or ``bias`` hold a NaN (:func:`_nan_free`):
    which of two NaNs an add returns depends on the instruction's operand
    order, which NumPy's loops and LLVM choose each their own way."""
    return _nan_free(x, w, bias) and compiling_in_helper("blas", x.dtype, kernel_signatures,
                                                         "NumPy's fold")


def _nan_free(*arrays) -> bool:
    """Whether no array holds a NaN. Then every NaN a sum or a product
    makes is the hardware's one default NaN (from ``inf - inf`` or ``0 *
    inf``), so where two meet in an add, whichever operand the instruction
    returns gives the same bits: a stand-in need only add the same terms in
    the same order, whatever operand order its compiler picks."""
    return not any(np.isnan(array).any() for array in arrays)


def weight_grad_stand_in(kernel: str, key: tuple, a, src, tables, groups: int, images: int,
                         length: int, b_len: int, tiles: bool, multiply_adds: int,
                         compile_kernel, kernel_signatures):
    """The weight gradient of :func:`.weight_grad_launch.weight_grad` by the
    baseline (:func:`.baseline.weight_grad_in_order`), as the ``kernel`` it
    stands in for (``weight_tiles`` where ``tiles``, else ``weight_dots``)
    would leave it, when that kernel (the variant ``key``) would have to
    compile now; else None. ``a`` and ``src`` rank 3, ``tables`` the
    kernel's (planes, plane_of, offsets, pitch, pad, stride), blocks of
    ``images`` images, ``length`` positions of ``a`` a row (a channel's; the
    tiles: a position's), ``b_len`` of a phase plane. NumPy lays each block
    out as the kernel does, the same values at every position its sums read
    (scratch positions and the zero padding included)."""
    if not (a.dtype.kind == "f" and multiply_adds <= config.BASELINE_TILES_MAX_MULTIPLY_ADDS):
        return None
    if not compiling_in_helper(kernel, a.dtype, kernel_signatures, "the baseline kernel"):
        return None
    _compiled.ensure(key[:5] + ("baseline_weight_grad",), compile_kernel,
                     "baseline_weight_grad", a.dtype)
    planes, plane_of, offsets, pitch, pad, stride = tables
    n_batch, c_a, c_s = a.shape[0], a.shape[1], src.shape[1]
    c_a_g, lanes = c_a // groups, simd.VECTOR_BYTES // a.dtype.itemsize
    room = -(-c_a_g // lanes) * lanes
    pairs = c_s // groups * len(offsets)
    grad = np.zeros((groups, pairs, room) if tiles else (groups, c_a_g, pairs), dtype=a.dtype)
    for n0 in range(0, n_batch, images):
        count = min(images, n_batch - n0)
        a_rows = _grid_rows(a[n0:n0 + count], pitch, length if not tiles else None)
        if tiles:  # a position's channels side by side, each group's in a vector's room
            by_position = np.zeros((count, groups, length, room), dtype=a.dtype)
            by_position[..., :c_a_g] = a_rows.reshape(count, groups, c_a_g, -1)[
                ..., :length].transpose(0, 1, 3, 2)
            a_rows = by_position
        b_rows = _plane_rows(src[n0:n0 + count], planes, pitch, pad, stride, b_len)
        parallel(weight_grad_in_order, a_rows.reshape(-1), b_rows.reshape(-1), plane_of,
                 offsets, len(planes), groups, c_a, c_s, count, length, b_len, tiles, grad,
                 multiply_adds=multiply_adds * count // n_batch)
    return grad


def _grid_rows(a, pitch, length):
    """``a`` (N, C, OD, OH, OW) on the grid of ``pitch`` (rows ``U_w`` long,
    planes ``U_h`` rows), zero at its scratch positions: (N, C, ``length``),
    or as long as the grid's ``OD`` planes where ``length`` is None."""
    n, c, o_d, o_h, o_w = a.shape
    box = o_d * pitch[1] * pitch[2]
    rows = np.zeros((n, c, max(box, length or 0)), dtype=a.dtype)
    rows[:, :, :box].reshape(n, c, o_d, pitch[1], pitch[2])[:, :, :, :o_h, :o_w] = a
    return rows if length is None or length == rows.shape[2] else np.ascontiguousarray(
        rows[:, :, :length])


def _plane_rows(src, planes, pitch, pad, stride, b_len):
    """The phase planes of ``src`` (N, C, D, H, W) on the grid of ``pitch``,
    ``b_len`` positions each, as :func:`.correlate._fill_window` copies
    them: plane ``(r_d, r_h, r_w)`` at grid position ``(j_d, j_h, j_w)``
    holds ``src[j*s + r - pad]`` (per dim), zero outside ``src``: (N, C,
    planes, ``b_len``)."""
    n, c = src.shape[:2]
    counts = (-(-b_len // (pitch[1] * pitch[2])), pitch[1], pitch[2])
    rows = np.zeros((n, c, len(planes)) + counts, dtype=src.dtype)
    for k, phase in enumerate(planes):
        at = [np.arange(count) * s + r - p for count, s, r, p in zip(counts, stride, phase, pad)]
        inside = [(i >= 0) & (i < size) for i, size in zip(at, src.shape[2:])]
        grid = np.ix_(*(np.flatnonzero(keep) for keep in inside))
        rows[:, :, k][(slice(None),) * 2 + grid] = src[
            (slice(None),) * 2 + np.ix_(*(i[keep] for i, keep in zip(at, inside)))]
    return np.ascontiguousarray(rows.reshape(n, c, len(planes), -1)[..., :b_len])


def compiling_in_helper(kernel: str, dtype, kernel_signatures, stand_in_name: str,
                        start: bool = True) -> bool:
    """Whether a helper process is compiling ``kernel`` for ``dtype`` now:
    started here where the kernel is neither loaded nor in the on-disk
    cache and a helper may compile it (``config.BACKGROUND_COMPILE``, a
    writable cache, a Python interpreter), or started earlier and not done.
    While it is, the caller computes with ``stand_in_name`` (named in the
    log), which must give the same bits; once it is done, the caller loads
    the kernel from disk (or compiles it, if the helper failed). Where not
    ``start``, a helper that would start here does not yet, and the caller
    stands in meanwhile (True)."""
    if not config.BACKGROUND_COMPILE:
        return False
    name = np.dtype(dtype).name
    helper = _helpers.get((kernel, name))
    if helper is not None:
        return helper.poll() is None
    signatures = kernel_signatures(kernel, dtype)
    if on_disk(signatures) or not cache_writable(signatures) or not _python_interpreter():
        return False
    if not start:
        return True
    _helpers[kernel, name] = _start_helper(kernel, name)
    _log.info("the %s kernel for %s compiles in a helper process; until it is ready, "
              "%s computes the same results, bit for bit", kernel, name, stand_in_name)
    return True


def polls_compiling() -> bool:
    """Whether the launcher's team must wait for its polls
    (:func:`.launch.poll_signatures`): neither loaded nor on disk while a
    helper process compiles them. Every helper compiles them before its
    kernel, so a cold first call, which starts one for its tuned kernel and
    then compiles the baseline, usually finds them on disk by the time it
    runs; where no helper runs, one starts for them alone."""
    return compiling_in_helper("team_polls", np.int64, lambda kernel, dtype: poll_signatures(),
                               "the thread pool", start=not helpers_running())


_launcher.polls_compiling = polls_compiling


def helpers_running() -> bool:
    """Whether a helper process started here is still compiling."""
    return any(helper.poll() is None for helper in _helpers.values())


def on_disk(signatures) -> bool:
    """Whether every ``(dispatcher, signature)`` is loaded or in Numba's
    on-disk cache (False where that cannot be told: Numba's cache has no
    public query)."""
    for dispatcher, signature in signatures:
        if signature in dispatcher.overloads:
            continue
        cache = dispatcher._cache
        try:
            key = cache._index_key(signature, dispatcher.targetctx.codegen())
            if key not in cache._cache_file._load_index():
                return False
        except Exception:  # a NullCache, or internals that moved
            return False
    return True


def cache_writable(signatures) -> bool:
    """Whether every dispatcher's on-disk cache is a directory this process
    may write (so may a helper process started from it)."""
    for dispatcher, _ in signatures:
        path = getattr(dispatcher._cache, "_cache_path", None)
        if path is None or not os.access(path, os.W_OK | os.X_OK):
            return False
    return True


@contextlib.contextmanager
def one_compiler(signatures, name: str):
    """Hold an exclusive lock on a file beside the on-disk cache of
    ``signatures``' first dispatcher while the body compiles the kernel
    ``name``, so that processes compiling it into one cache at once (a
    pool's workers, a cluster's workers on one node, this package's helper
    process) compile it once: the others wait, then load what the first
    wrote. Without a writable cache or file locks (not POSIX), the body runs
    unlocked; after ``_LOCK_WAIT_SECONDS`` it runs anyway (a holder that
    hangs must not stop this process; one that dies releases the lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = getattr(signatures[0][0]._cache, "_cache_path", None) if signatures else None
    try:
        lock = open(os.path.join(path, f"numba_deconv-{name}.lock"), "a")
    except (OSError, TypeError):  # no cache directory, or not one this process may write
        yield
        return
    with lock:
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield  # closing the file releases the lock


#: How long :func:`one_compiler` waits for another process's compile (the
#: slowest kernel compiles in about 30 s alone, 2-3x that on busy cores).
_LOCK_WAIT_SECONDS = 300.0


def _python_interpreter() -> bool:
    """Whether ``sys.executable`` is a Python interpreter that can run the
    helper (in an application that embeds Python, or a frozen one, it is
    the application itself: kernels then compile in place)."""
    name = os.path.basename(sys.executable or "").lower()
    return name.startswith("python") and not getattr(sys, "frozen", False)


def _start_helper(kernel: str, dtype_name: str) -> subprocess.Popen:
    # Its own session, so that a Ctrl-C meant for this process leaves it
    # compiling.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, NUMBA_DECONV_BACKGROUND_COMPILE="0")
    return subprocess.Popen([sys.executable, "-c", _HELPER_SOURCE, kernel, dtype_name, root],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)


def wait(timeout: float | None = None) -> None:
    """Wait until every helper process started so far has finished (for
    tests and benchmarks that want the tuned kernels from here on)."""
    for helper in list(_helpers.values()):
        helper.wait(timeout)
