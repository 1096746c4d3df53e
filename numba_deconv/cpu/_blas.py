"""The blas kernel: its tasks, its launcher, and NumPy's BLAS held to one
thread while our own threads run them.

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
import itertools
import math
import threading
import typing

import numba
import numpy as np

from .. import _phases, config
from .kernels import col2im, col2im_last
from .launch import worker_pool

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


class BlasTask(typing.NamedTuple):
    """One BLAS product and fold: image ``n``, output channels ``c0..c1`` of
    group ``g`` and, where one image's columns would not fit
    ``WORKSPACE_BYTES``, a slab ``(i0, i1, o0, o1)`` of the outermost
    spatial dim (outputs ``o0..o1`` from inputs ``i0..i1``, halo included)."""

    n: int
    g: int
    c0: int
    c1: int
    slab: tuple | None


class BlasLayout(typing.NamedTuple):
    tasks: list  # of BlasTask
    slab_dim: int | None  # the spatial dim the slabs cut, if any
    block: int  # the most output channels of a task


def blas_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                 threads):
    """Tasks whose columns fit ``WORKSPACE_BYTES``, about one per
    ``BLAS_TASK_MULTIPLY_ADDS`` (at most ``BLAS_MAX_TASKS``) for many
    threads: output channels are split first (no halo to recompute) while
    the product keeps at least ``GEMM_MIN_ROWS`` rows, then the outermost
    spatial dim into slabs.

    Never by ``threads``: a product's shape can change the last bits BLAS
    computes, and a result must not change with the thread count.
    """
    n_batch, c_in, c_out_g = x_shape[0], x_shape[1], w_shape[1]
    in_spatial, kernel, out_spatial = x_shape[2:], w_shape[2:], out_shape[2:]
    taps = math.prod(kernel)
    budget = max(config.WORKSPACE_BYTES // itemsize, 1)
    in_size = math.prod(in_spatial)
    multiply_adds = n_batch * c_in * c_out_g * taps * in_size
    wanted = min(max(multiply_adds // config.BLAS_TASK_MULTIPLY_ADDS, 1), config.BLAS_MAX_TASKS)
    block = c_out_g
    min_block = -(-config.GEMM_MIN_ROWS // taps)
    while block * taps * in_size > budget and block > min_block:
        block = -(-block // 2)
    n_blocks = max(-(-c_out_g // block),
                   min(-(-wanted // (n_batch * groups)), max(c_out_g // min_block, 1)))
    bounds = [c_out_g * b // n_blocks for b in range(n_blocks + 1)]
    block = max(bounds[b + 1] - bounds[b] for b in range(n_blocks))

    slabs = [None]
    dim = 0 if in_spatial[0] > 1 else (1 if in_spatial[1] > 1 else None)
    n_slabs = -(-wanted // (n_batch * groups * n_blocks))
    if dim is not None:
        # A slab recomputes the inputs its neighbour reads too (the halo):
        # for more tasks, only slabs at least SLAB_MIN_HALOS halos long.
        halo = -(-(kernel[dim] - 1) * dilation[dim] // stride[dim])
        n_slabs = min(n_slabs, max(in_spatial[dim] // (config.SLAB_MIN_HALOS * max(halo, 1)), 1))
    if dim is not None and (block * taps * in_size > budget or n_slabs > 1):
        s, d, p, k = stride[dim], dilation[dim], pad[dim], kernel[dim]
        in_len, out_len = in_spatial[dim], out_spatial[dim]
        planes = max(budget // (block * taps * in_size // in_len), 1)
        step = max((planes - 1) * s - (k - 1) * d + 1, 1)
        step = min(step, -(-out_len // n_slabs))
        slabs = []
        for o0 in range(0, out_len, step):
            o1 = min(o0 + step, out_len)
            i0 = max(-((-(o0 + p - (k - 1) * d)) // s), 0)
            i1 = min((o1 - 1 + p) // s + 1, in_len)
            # No input reaching these outputs leaves them to the bias.
            slabs.append((i0, i1, o0, o1) if i1 > i0 else (0, 0, o0, o1))
    else:
        dim = None
    tasks = [BlasTask(n, g, bounds[b], bounds[b + 1], slab)
             for n in range(n_batch) for g in range(groups)
             for b in range(n_blocks) for slab in slabs]
    return BlasLayout(tasks, dim, block)


def _task_part(task, dim, out_spatial, stride, pad):
    """A task's input slab and output block: ``(inputs, outputs, o_first,
    o_count, task_pad)``, the slices of the slab's dim (all where the task
    has no slab), the first output row and plane of its block and their
    counts, and the padding of the problem its slab is (inputs starting at
    its first)."""
    o_first, o_count, task_pad = [0, 0], list(out_spatial[:2]), list(pad)
    if task.slab is None:
        return slice(None), slice(None), o_first, o_count, tuple(task_pad)
    i0, i1, o0, o1 = task.slab
    o_first[dim], o_count[dim] = o0, o1 - o0
    task_pad[dim] = o0 + pad[dim] - i0 * stride[dim]
    return slice(i0, i1), slice(o0, o1), o_first, o_count, tuple(task_pad)


def _on_threads(run_task, tasks, room, dtype):
    """``run_task(task, cols)`` for every task of ``tasks``, claimed in turn
    by our threads (as many as there are tasks), each with ``cols`` of
    ``room`` elements of its own, BLAS held to one thread; without control
    of BLAS's threads ours would fight them, so on the calling thread
    alone."""
    claim = itertools.count().__next__  # atomic under the GIL

    def work():
        cols = np.empty(room, dtype=dtype)
        while (index := claim()) < len(tasks):
            run_task(tasks[index], cols)

    threads = numba.get_num_threads() if blas_controllers() else 1
    with single_threaded_blas():
        pending = [worker_pool().submit(work) for _ in range(min(threads, len(tasks)) - 1)]
        work()
        for future in pending:
            future.result()


def _runs(kernel, stride, dilation, pad, in_sizes, out_sizes):
    """Per dim, per tap: the slices of the inputs that reach an output
    through it and of the outputs they reach (``None`` where none do)."""
    runs = []
    for k_size, s, d, p, i_size, o_size in zip(kernel, stride, dilation, pad, in_sizes,
                                               out_sizes):
        per_tap = []
        for k in range(k_size):
            phase, shift, lo, hi = _phases.tap_inputs(k, s, d, p, i_size, o_size)
            first = (lo + shift) * s + phase
            per_tap.append((slice(lo, hi), slice(first, first + (hi - lo - 1) * s + 1, s))
                           if hi > lo else None)
        runs.append(per_tap)
    return runs


def col2im_by_numpy(cols, bias, out, co_first, od_first, oh_first, out_d, out_h, stride,
                    dilation, pad):
    """:func:`.kernels.col2im` in NumPy, to the bit: what the BLAS route
    folds its columns with while a helper process compiles ``col2im``
    (:mod:`.tiering`; 5 s). The same sums in the same order: every output
    starts from zero and adds its taps' columns in tap order, then the bias
    (``acc + bias``); and where the kernel is as wide as the stride, the
    rows that one (kd, kh) reaches are ``columns + bias``, with no zero to
    start from (which would turn a -0.0 into 0.0)."""
    c_block, kernel, in_sizes = cols.shape[0], cols.shape[1:4], cols.shape[4:]
    o_w = out.shape[3]
    runs = _runs(kernel, stride, dilation, pad, in_sizes, (out_d, out_h, o_w))
    acc = np.zeros((c_block, out_d, out_h, o_w), dtype=out.dtype)
    reaching = np.zeros((out_d, out_h), dtype=np.int64)  # the (kd, kh) reaching each row
    with np.errstate(invalid="ignore", over="ignore"):
        for (kd, run_d), (kh, run_h) in itertools.product(enumerate(runs[0]),
                                                          enumerate(runs[1])):
            if run_d is None or run_h is None:
                continue
            reaching[run_d[1], run_h[1]] += 1
            for kw, run_w in enumerate(runs[2]):
                if run_w is not None:
                    acc[:, run_d[1], run_h[1], run_w[1]] += cols[:, kd, kh, kw, run_d[0],
                                                                 run_h[0], run_w[0]]
        block = out[co_first:co_first + c_block, od_first:od_first + out_d,
                    oh_first:oh_first + out_h]
        bias_block = bias[co_first:co_first + c_block, None, None]
        np.add(acc, bias_block[..., None], out=block)
        s_w, k_w = stride[2], kernel[2]
        # col2im's disjoint_w (its very test): tap kw fills phase kw of a
        # row whole, from the same inputs for every kw.
        spans = [_phases.tap_inputs(kw, s_w, dilation[2], pad[2], in_sizes[2], o_w)
                 for kw in range(k_w)]
        if not (k_w == s_w and all(
                phase == kw and shift + lo == 0 and lo == spans[0][2]
                and hi - lo == (o_w - kw + s_w - 1) // s_w
                for kw, (phase, shift, lo, hi) in enumerate(spans))):
            return
        for (kd, run_d), (kh, run_h) in itertools.product(enumerate(runs[0]),
                                                          enumerate(runs[1])):
            if run_d is None or run_h is None:
                continue
            alone = reaching[run_d[1], run_h[1]] == 1
            rows = block[:, run_d[1], run_h[1]]
            for kw, (_, _, lo, hi) in enumerate(spans):
                rows[:, alone, kw::s_w] = (
                    cols[:, kd, kh, kw, run_d[0], run_h[0], lo:hi][:, alone] + bias_block)


def col2im_last_by_numpy(cols, bias, out, co_first, od_first, oh_first, out_d, out_h, kernel,
                         stride, dilation, pad):
    """:func:`.kernels.col2im_last` in NumPy, to the bit, as
    :func:`col2im_by_numpy` is ``col2im``: every output starts from zero,
    adds its taps' columns in tap order, and goes out as ``bias + sum``."""
    in_sizes, c_block = cols.shape[:3], cols.shape[4]
    o_w = out.shape[2]
    runs = _runs(kernel, stride, dilation, pad, in_sizes, (out_d, out_h, o_w))
    acc = np.zeros((out_d, out_h, o_w, c_block), dtype=out.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        for tap, (run_d, run_h, run_w) in enumerate(itertools.product(*runs)):
            if run_d is not None and run_h is not None and run_w is not None:
                acc[run_d[1], run_h[1], run_w[1]] += cols[run_d[0], run_h[0], run_w[0], tap]
        np.add(bias[co_first:co_first + c_block], acc,
               out=out[od_first:od_first + out_d, oh_first:oh_first + out_h, :,
                       co_first:co_first + c_block])


def run_blas(x, w, bias, out, launch, prepared=None, by_numpy=False):
    """The blas kernel's launcher (:data:`.driver.LAUNCHERS`): the tasks of
    :func:`blas_layout` on our threads, BLAS held to one thread; the
    columns folded by :func:`.kernels.col2im`, or ``by_numpy``
    (:func:`col2im_by_numpy`, the same bits) while it compiles."""
    fold = col2im_by_numpy if by_numpy else col2im
    groups, stride, dilation, pad = launch.groups, launch.stride, launch.dilation, launch.pad
    c_in_g, c_out_g = x.shape[1] // groups, w.shape[1]
    kernel, out_spatial = w.shape[2:], out.shape[2:]
    taps = math.prod(kernel)
    # W^T per group, (groups, C_out_g*K, C_in_g): a transposed view, which
    # BLAS reads as is (a copy would cost more than the products when the
    # weights outweigh the images).
    w_t = w.reshape(groups, c_in_g, c_out_g * taps).transpose(0, 2, 1)
    tasks, dim, block = launch.layout
    # A pointwise call at stride 1 (1x1 kernel, no padding): its columns are
    # its output, so the products write there and only the bias is added,
    # with no fold (the same sums, and the same bits).
    pointwise = (taps == 1 and out_spatial == x.shape[2:] and set(stride) == {1}
                 and set(pad) == {0})

    def run_task(task, cols):
        n, g, c0, c1 = task.n, task.g, task.c0, task.c1
        inputs, outputs, o_first, o_count, task_pad = _task_part(task, dim, out_spatial,
                                                                 stride, pad)
        along = (slice(None),) * (1 + (dim or 0))  # to the slab's dim, past the channels
        x_part = x[n, g * c_in_g:(g + 1) * c_in_g][along + (inputs,)]
        part_spatial = x_part.shape[1:]
        if pointwise:
            # (A slab cuts the outermost dim: its channels' positions stay
            # rows of one view.)
            oc = slice(g * c_out_g + c0, g * c_out_g + c1)
            out_part = out[n, oc][along + (outputs,)].reshape(c1 - c0, -1)
            with np.errstate(invalid="ignore", over="ignore"):
                np.matmul(w_t[g, c0:c1], x_part.reshape(c_in_g, -1), out=out_part)
                out_part += bias[oc, None]
            return
        size = (c1 - c0) * taps * math.prod(part_spatial)
        block_cols = cols[:size].reshape((c1 - c0) * taps, -1)
        if size:
            # NaN/Inf in the data are results, not errors (the kernels
            # propagate them silently too).
            with np.errstate(invalid="ignore", over="ignore"):
                np.matmul(w_t[g, c0 * taps:c1 * taps], x_part.reshape(c_in_g, -1),
                          out=block_cols)
        fold(block_cols.reshape((c1 - c0,) + kernel + part_spatial), bias, out[n],
             g * c_out_g + c0, o_first[0], o_first[1], o_count[0], o_count[1],
             stride, dilation, task_pad)

    _on_threads(run_task, tasks, 0 if pointwise else block * taps * math.prod(x.shape[2:]),
                x.dtype)
    return True


def run_blas_last(x, w, bias, out, launch, by_numpy=False):
    """:func:`run_blas` on channels-last ``x`` (N, D, H, W, C_in) and ``out``
    (N, OD, OH, OW, C_out) where they lie, the same tasks: each product is
    a task's input positions x channels (a view of ``x``, in place) times
    its block of the weights laid out as (C_in/groups, taps x channels),
    each position's columns then its taps' channels side by side, which
    :func:`.kernels.col2im_last` folds into the output a tap's run of
    positions at a time; a pointwise call's products are its output's
    positions x channels, written there. (Through a transposed view of
    ``x`` instead, as channels first, BLAS packed the operand at a third
    of its product's speed and the output went through a transpose: r26,
    187 -> 8 channels on 21x74, 1.27x the channels-first time.)"""
    groups, stride, dilation, pad = launch.groups, launch.stride, launch.dilation, launch.pad
    c_in_g, c_out_g = x.shape[4] // groups, w.shape[1]
    kernel, out_spatial = w.shape[2:], out.shape[1:4]
    taps = math.prod(kernel)
    tasks, dim, block = launch.layout
    pointwise = (taps == 1 and out_spatial == x.shape[1:4] and set(stride) == {1}
                 and set(pad) == {0})
    fold = col2im_last_by_numpy if by_numpy else col2im_last
    # Each task's block of weights, (C_in/groups, taps x channels): the
    # weights once a call, in blocks that BLAS reads whole.
    blocks = {}
    for task in tasks:
        key = task.g, task.c0, task.c1
        if key not in blocks:
            part = w[task.g * c_in_g:(task.g + 1) * c_in_g, task.c0:task.c1]
            blocks[key] = np.ascontiguousarray(
                part.reshape(c_in_g, task.c1 - task.c0, taps).transpose(0, 2, 1)).reshape(
                c_in_g, -1)
    def run_task(task, cols):
        n, g, c0, c1 = task.n, task.g, task.c0, task.c1
        inputs, outputs, o_first, o_count, task_pad = _task_part(task, dim, out_spatial,
                                                                 stride, pad)
        along = (slice(None),) * (dim or 0)  # to the slab's dim
        x_part = x[n, ..., g * c_in_g:(g + 1) * c_in_g][along + (inputs,)]
        part_spatial = x_part.shape[:3]
        positions = math.prod(part_spatial)
        weights = blocks[g, c0, c1]
        if pointwise:
            oc = slice(g * c_out_g + c0, g * c_out_g + c1)
            # A view: its positions are C_out apart along every dim.
            out_rows = out[n, ..., oc][along + (outputs,)].reshape(positions, c1 - c0)
            with np.errstate(invalid="ignore", over="ignore"):
                np.matmul(x_part.reshape(positions, c_in_g), weights, out=out_rows)
                out_rows += bias[oc]
            return
        block_cols = cols[:positions * weights.shape[1]].reshape(positions, weights.shape[1])
        if positions:
            with np.errstate(invalid="ignore", over="ignore"):
                np.matmul(x_part.reshape(positions, c_in_g), weights, out=block_cols)
        fold(block_cols.reshape(part_spatial + (taps, c1 - c0)), bias, out[n],
             g * c_out_g + c0, o_first[0], o_first[1], o_count[0], o_count[1],
             kernel, stride, dilation, task_pad)

    _on_threads(run_task, tasks, 0 if pointwise else block * taps * math.prod(x.shape[1:4]),
                x.dtype)
    return True
