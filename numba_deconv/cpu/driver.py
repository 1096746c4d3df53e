"""Host side of the CPU backend: choose a strategy, shape the arrays, launch.

Arrays reaching :func:`run` are already checked and laid out by
``numba_deconv.api``: channels first, batched, C-contiguous, writable, all in
the working dtype.

Strategies
----------
``direct``
    Reads ``x`` and ``w`` directly, no BLAS. With enough channel pairs per
    group (``TILED_MIN_CHANNEL_PAIRS``) and finite weights it runs
    :func:`~numba_deconv.cpu.tiled.direct_tiled` (phase planes, register
    tiles of 8 output channels x 3 vectors of positions). With few channels
    per group (depthwise, single-channel images), rows of at most
    ``PLANES_MAX_ROW`` inputs go to
    :func:`~numba_deconv.cpu.kernels.direct_planes` (whole
    planes per tap, on zero-padded copies of the planes a task reads),
    longer ones to :func:`~numba_deconv.cpu.kernels.direct_rows`. Tiny
    calls run ``direct_rows_serial`` on the calling thread.
``gemm``
    The matrix product ``cols = W^T @ X`` (every product of the definition,
    none wasted on inserted zeros), then the columns folded into the output
    (col2im). Real data runs
    :func:`~numba_deconv.cpu.columns.columns_tiled`: register tiles along
    the weights, the whole batch at once, so each weight is read once per
    call. Complex data goes through BLAS per image and block of output
    channels, then :func:`~numba_deconv.cpu.kernels.col2im`; those tasks
    run in our own threads, one per Numba thread, with BLAS held to one
    thread so that two thread pools never fight over the cores (see
    ``_blas``). Workspace: one task's columns per thread. Chosen for many
    channels (``GEMM_MIN_CHANNELS``) on small images when the batch has few
    input positions, or when the data is complex; see
    :func:`choose_strategy`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import from_dtype, types

from .. import config
from ._blas import single_threaded_blas
from .columns import TILE_POSITIONS, columns_tiled
from .columns import tile_width as columns_tile_width
from .kernels import col2im, direct_planes, direct_rows, direct_rows_serial
from .tiled import (TILE_ROWS, direct_tiled, fill_weight_table, phase_span, phase_tables,
                    tile_width, weight_tables)

STRATEGIES = ("direct", "gemm")

#: The kernels behind each strategy: the driver picks one per call (by size,
#: channels, row length and whether the weights are finite), and each is
#: compiled the first time it is picked.
KERNELS = {"direct": ("serial", "rows", "planes", "tiled"), "gemm": ("columns", "col2im")}


def kernel_signatures(kernel: str, dtype) -> list:
    """``(dispatcher, signature)`` pairs that make up ``kernel`` for ``dtype``,
    with exactly the argument types :func:`run` passes."""
    scalar = from_dtype(np.dtype(dtype))
    triple = types.UniTuple(types.int64, 3)
    count = types.int64
    arr1, arr4, arr5, arr7 = (types.Array(scalar, ndim, "C") for ndim in (1, 4, 5, 7))
    index1, index2 = (types.Array(types.int64, ndim, "C") for ndim in (1, 2))
    direct = (arr5, arr5, arr1, arr5, count, triple, triple, triple)
    tiled = (arr5, arr4, index2, index1, index2, arr1, arr5) + (triple,) * 3 + (count,) * 3
    weight_table = (arr5, count, types.Array(types.int64, 3, "C"), index1)
    return {
        "serial": [(direct_rows_serial, direct)],
        "rows": [(direct_rows, direct + (count,))],
        "planes": [(direct_planes, direct + (count, count))],
        # Register tiles exist for real dtypes only (see tiled.simd).
        "tiled": [(direct_tiled, tiled), (fill_weight_table, weight_table)]
        if scalar in (types.float32, types.float64) else [],
        "columns": [(columns_tiled, direct + (count, count, types.boolean))]
        if scalar in (types.float32, types.float64) else [],
        "col2im": [(col2im, (arr7, arr1, arr4) + (count,) * 5 + (triple,) * 3)],
    }[kernel]


def choose_strategy(geometry, batch: int, dtype) -> str:
    """The strategy the heuristic picks for this geometry, batch and dtype.

    Real data runs the direct strategy (the tiled kernel, as a rule) unless
    many channels meet small images and few input positions in the whole
    batch: then the weights outweigh the work on each, and the columns
    kernel, which reads each weight once per call, beats the tiled kernel,
    which streams its weight table once per image and wastes most of a
    tile on a small image. Complex data has no register tiles, so there
    BLAS takes every thick product.
    """
    in_per_group = geometry.in_channels // geometry.groups
    out_per_group = geometry.out_channels // geometry.groups
    if min(in_per_group, out_per_group) < config.GEMM_MIN_CHANNELS:
        return "direct"
    positions = math.prod(geometry.in_spatial)
    if np.dtype(dtype).kind == "c":
        return "gemm" if positions >= config.GEMM_MIN_POSITIONS else "direct"
    in_batch = batch * positions
    weights = in_per_group * out_per_group * math.prod(geometry.kernel)
    return "gemm" if (positions <= config.GEMM_MAX_IMAGE_POSITIONS
                      and in_batch <= config.GEMM_MAX_BATCH_POSITIONS
                      and weights >= config.GEMM_MIN_WEIGHTS_PER_POSITION * in_batch
                      ) else "direct"


@dataclasses.dataclass(frozen=True)
class Launch:
    """What running a call needs that depends only on its geometry and batch
    (callers that repeat a call keep it; see :func:`launch_for`)."""

    x_shape: tuple  # x, weight and out lifted to rank 3 by unit dims
    w_shape: tuple
    out_shape: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    serial: bool  # too small to repay waking the thread pool
    rows: int  # output rows, N * C_out * OD * OH


@functools.lru_cache(maxsize=4096)
def launch_for(geometry, batch: int) -> Launch:
    """The :class:`Launch` of ``geometry`` with ``batch`` images (rank <= 3)."""
    lift = (1,) * (3 - geometry.rank)
    return Launch(
        x_shape=(batch, geometry.in_channels) + lift + geometry.in_spatial,
        w_shape=(geometry.in_channels, geometry.out_channels // geometry.groups)
        + lift + geometry.kernel,
        out_shape=(batch, geometry.out_channels) + lift + geometry.out_spatial,
        stride=lift + geometry.stride, dilation=lift + geometry.dilation,
        pad=(0,) * len(lift) + geometry.pad_before,
        serial=batch * geometry.flops // 2 < config.SERIAL_MAX_MULTIPLY_ADDS,
        rows=batch * geometry.out_channels * math.prod(geometry.out_spatial[:-1]))


def run(x, w, bias, out, geometry, strategy: str, prepare, launch=None) -> None:
    """Compute into ``out`` (N, C_out, *O) from ``x`` (N, C_in, *I).

    ``prepare(kernel)`` is called with the name of the kernel (one of
    ``KERNELS[strategy]``) before it is launched, so that it can be
    compiled, or loaded from the disk cache, and recorded. ``launch`` is
    :func:`launch_for` of the call, if the caller keeps it.
    """
    if len(geometry.kernel) > 3:
        _run_by_leading_slices(x, w, bias, out, geometry, strategy, prepare)
        return
    if launch is None:
        launch = launch_for(geometry, x.shape[0])
    x3 = x.reshape(launch.x_shape)
    w3 = w.reshape(launch.w_shape)
    out3 = out.reshape(launch.out_shape)
    if strategy == "direct":
        _direct(x3, w3, bias, out3, geometry.groups, launch, prepare)
    elif x.dtype.kind == "f":
        prepare("columns")
        channel_block, k_block, in_place = _columns_layout(
            x3.shape[0], x3.shape[1] // geometry.groups, w3.shape[1], geometry.groups,
            math.prod(x3.shape[2:]), math.prod(w3.shape[2:]), x.dtype.itemsize,
            numba.get_num_threads(), config.WORKSPACE_BYTES, _ColumnsTuning.current())
        columns_tiled(x3, w3, bias, out3, geometry.groups, launch.stride, launch.dilation,
                      launch.pad, channel_block, k_block, in_place)
    else:
        prepare("col2im")
        _gemm(x3, w3, bias, out3, geometry.groups, launch.stride, launch.dilation, launch.pad)


class _ColumnsTuning(typing.NamedTuple):
    """The knobs of :func:`_columns_layout` from :mod:`numba_deconv.config`
    (a key of its cache, so that changing them takes effect)."""

    tasks_per_thread: int
    pack_bytes: int
    in_place_max_positions: int
    in_place_tasks_per_thread: int
    in_place_k_block: int

    @classmethod
    def current(cls):
        return cls(config.COLUMNS_TASKS_PER_THREAD, config.COLUMNS_PACK_BYTES,
                   config.COLUMNS_IN_PLACE_MAX_POSITIONS,
                   config.COLUMNS_IN_PLACE_TASKS_PER_THREAD, config.COLUMNS_IN_PLACE_K_BLOCK)


@functools.lru_cache(maxsize=1024)
def _columns_layout(batch, c_in_g, c_out_g, groups, positions, taps, itemsize, threads,
                    workspace_bytes, tuning):
    """``(channel_block, k_block, in_place)`` of :func:`columns_tiled`.

    In place (at most ``tuning.in_place_max_positions`` positions in the
    batch): ``in_place_tasks_per_thread`` tasks per thread and
    ``in_place_k_block`` input channels per block. Packed: output channels
    per task so that there are ``tasks_per_thread`` tasks per thread, and
    input channels per block so that a block's packed weights fit
    ``pack_bytes``. Either way a task's columns fit ``workspace_bytes``
    where one output channel's do.
    """
    in_place = batch * positions <= tuning.in_place_max_positions
    tasks_per_thread = (tuning.in_place_tasks_per_thread if in_place
                        else tuning.tasks_per_thread)
    per_task = -(-c_out_g * groups // (threads * tasks_per_thread))
    rows = -(-batch * positions // TILE_POSITIONS) * TILE_POSITIONS
    fitting = workspace_bytes // (rows * taps * itemsize)
    channel_block = max(1, min(c_out_g, per_task, fitting))
    if in_place:
        k_block = tuning.in_place_k_block
    else:
        width = columns_tile_width(itemsize)
        tiles = -(-channel_block * taps // width)
        k_block = tuning.pack_bytes // (tiles * width * itemsize)
    return channel_block, max(1, min(c_in_g, k_block)), in_place


def _direct(x, w, bias, out, groups, launch, prepare) -> None:
    """The direct strategy: pick the kernel by size, channels, row length and
    whether the weights are finite (rank-3 arrays)."""
    pairs = w.shape[0] // groups * w.shape[1]
    # The tiled kernel sums in the same order on any number of threads,
    # so it is chosen before the thread count is looked at.
    if not launch.serial and pairs >= config.TILED_MIN_CHANNEL_PAIRS and x.dtype.kind == "f":
        prepare("tiled")
        if _direct_tiled(x, w, bias, out, groups, launch):
            return
    if launch.serial or numba.get_num_threads() == 1:
        prepare("serial")
        direct_rows_serial(x, w, bias, out, groups, launch.stride, launch.dilation, launch.pad)
    elif x.shape[-1] <= config.PLANES_MAX_ROW and np.isfinite(w).all():
        prepare("planes")
        _direct_planes(x, w, bias, out, groups, launch)
    else:
        prepare("rows")
        chunks = min(launch.rows, config.DIRECT_CHUNKS_PER_THREAD * numba.get_num_threads())
        direct_rows(x, w, bias, out, groups, launch.stride, launch.dilation, launch.pad, chunks)


def _direct_planes(x, w, bias, out, groups, launch) -> None:
    threads = numba.get_num_threads()
    tasks = x.shape[0] * out.shape[1] * out.shape[2] * launch.stride[1]
    phase_rows = -(-out.shape[3] // launch.stride[1])
    # Blocks of rows only when there are too few planes to share out.
    blocks = min(phase_rows, -(-config.DIRECT_CHUNKS_PER_THREAD * threads // tasks))
    chunks = min(tasks * blocks, config.DIRECT_CHUNKS_PER_THREAD * threads)
    direct_planes(x, w, bias, out, groups, launch.stride, launch.dilation,
                  launch.pad, blocks, chunks)


@functools.lru_cache(maxsize=1024)
def _tiled_layout(kernel, stride, dilation, pad, out_spatial, batch, groups, c_in_g, c_out_g,
                  itemsize, threads, tasks_per_thread, min_positions, window_bytes,
                  acc_bytes):
    """Phase tables and work split of the tiled kernel: ``(pitch, shift_max,
    phases, taps, tap_counts, chunks, block_parts, sub)``.

    Images (and groups) are the tasks first; each image is cut into
    stretches of at least ``min_positions`` positions when there are too
    few images for ``tasks_per_thread`` per thread, or when one image's
    input window would pass ``window_bytes``; then, for want of tasks, its
    output channels into ranges of register-tile blocks (large channel
    counts on small images).
    """
    pitch, shift_max, phases, taps = phase_tables(kernel, stride, dilation, pad,
                                                  out_spatial)
    tap_counts = np.array([len(t) for t in taps], dtype=np.int64)
    span = phase_span(phases, pitch)
    wanted = -(-tasks_per_thread * threads // (batch * groups))
    by_window = -(-c_in_g * span * itemsize // window_bytes)
    chunks = max(1, min(max(wanted, by_window), span // min_positions))
    blocks = -(-c_out_g // TILE_ROWS)
    block_parts = min(blocks, -(-wanted // chunks))
    # Positions per sweep: all accumulator rows of a task fit acc_bytes.
    width = tile_width(itemsize)
    rows = -(-blocks // block_parts) * TILE_ROWS
    longest = -(-span // chunks)
    sub = min(max(acc_bytes // (rows * itemsize) // width, 1), -(-longest // width)) * width
    return pitch, shift_max, phases, taps, tap_counts, chunks, block_parts, sub


def _direct_tiled(x, w, bias, out, groups, launch) -> bool:
    """Run the tiled kernel; False (nothing computed) if a weight is not
    finite."""
    pitch, shift_max, phases, taps, tap_counts, chunks, block_parts, sub = _tiled_layout(
        w.shape[2:], launch.stride, launch.dilation, launch.pad, out.shape[2:],
        x.shape[0], groups, x.shape[1] // groups, w.shape[1], x.dtype.itemsize,
        numba.get_num_threads(), config.TILED_TASKS_PER_THREAD, config.TILED_MIN_POSITIONS,
        config.TILED_WINDOW_BYTES, config.TILED_ACC_BYTES)
    weights, offsets, finite = weight_tables(w, groups, taps)
    if not finite:
        return False
    direct_tiled(x, weights, offsets, tap_counts, phases, bias, out, pitch, shift_max,
                 launch.stride, chunks, block_parts, sub)
    return True


_pool = None


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(numba.config.NUMBA_NUM_THREADS - 1, 1),
                                   thread_name_prefix="numba_deconv")
    return _pool


def _gemm_tasks(n_batch, groups, c_out_g, taps, in_spatial, out_spatial, kernel,
                stride, dilation, pad, itemsize):
    """Split the GEMM work into tasks whose columns fit ``WORKSPACE_BYTES``.

    A task is ``(n, g, c0, c1, slab)``: image ``n``, output channels
    ``c0..c1`` of group ``g`` and, when one image's columns do not fit in
    cache, a slab of the outermost spatial dim: ``slab = (i0, i1, o0, o1)``
    computes outputs ``o0..o1`` from inputs ``i0..i1`` (the inputs that
    reach them, halo included), or None for the whole dim (then the
    returned ``dim`` is None too). Channels are
    split first (no halo to recompute) while the product keeps at least
    ``GEMM_MIN_ROWS`` rows.
    """
    budget = max(config.WORKSPACE_BYTES // itemsize, 1)
    in_size = math.prod(in_spatial)
    block = c_out_g
    min_block = -(-config.GEMM_MIN_ROWS // taps)
    while block * taps * in_size > budget and block > min_block:
        block = -(-block // 2)
    threads = numba.get_num_threads()
    # Enough channel blocks for every thread even with a single image.
    n_blocks = max(-(-c_out_g // block), min(c_out_g, -(-threads // (n_batch * groups))))
    bounds = [c_out_g * b // n_blocks for b in range(n_blocks + 1)]
    block = max(bounds[b + 1] - bounds[b] for b in range(n_blocks))

    slabs = [None]
    dim = 0 if in_spatial[0] > 1 else (1 if in_spatial[1] > 1 else None)
    per_plane = block * taps * in_size // in_spatial[dim] if dim is not None else 0
    if dim is not None and block * taps * in_size > budget:
        s, d, p, k = stride[dim], dilation[dim], pad[dim], kernel[dim]
        in_len, out_len = in_spatial[dim], out_spatial[dim]
        planes = max(budget // per_plane, 1)
        step = max((planes - 1) * s - (k - 1) * d + 1, 1)
        slabs = []
        for o0 in range(0, out_len, step):
            o1 = min(o0 + step, out_len)
            i0 = max(-((-(o0 + p - (k - 1) * d)) // s), 0)
            i1 = min((o1 - 1 + p) // s + 1, in_len)
            if i1 > i0:
                slabs.append((i0, i1, o0, o1))
            else:  # no input reaches these outputs: bias only
                slabs.append((0, 0, o0, o1))
    else:
        dim = None
    tasks = [(n, g, bounds[b], bounds[b + 1], slab)
             for n in range(n_batch) for g in range(groups)
             for b in range(n_blocks) for slab in slabs]
    return tasks, dim, block


def _gemm(x, w, bias, out, groups, stride, dilation, pad) -> None:
    n_batch, c_in = x.shape[:2]
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    out_spatial = out.shape[2:]
    c_in_g, c_out_g = c_in // groups, w.shape[1]
    taps = math.prod(kernel)
    # W^T per group, (groups, C_out_g*K, C_in_g): a transposed view, which
    # BLAS reads as is (a copy would cost more than the products when the
    # weights outweigh the images).
    w_t = w.reshape(groups, c_in_g, c_out_g * taps).transpose(0, 2, 1)
    tasks, dim, block = _gemm_tasks(
        n_batch, groups, c_out_g, taps, in_spatial, out_spatial, kernel,
        stride, dilation, pad, x.dtype.itemsize)

    def work(my_tasks):
        cols = np.empty(block * taps * math.prod(in_spatial), dtype=x.dtype)
        for n, g, c0, c1, slab in my_tasks:
            x_part = x[n, g * c_in_g:(g + 1) * c_in_g]
            o_first, o_count, task_pad = [0, 0], list(out_spatial[:2]), list(pad)
            if slab is not None:
                i0, i1, o0, o1 = slab
                x_part = x_part[(slice(None),) * (1 + dim) + (slice(i0, i1),)]
                o_first[dim], o_count[dim] = o0, o1 - o0
                # The slab is the same problem with inputs starting at i0.
                task_pad[dim] = o0 + pad[dim] - i0 * stride[dim]
            part_spatial = x_part.shape[1:]
            size = (c1 - c0) * taps * math.prod(part_spatial)
            block_cols = cols[:size].reshape((c1 - c0) * taps, -1)
            if size:
                # NaN/Inf in the data are results, not errors (the kernels
                # propagate them silently too).
                with np.errstate(invalid="ignore", over="ignore"):
                    np.matmul(w_t[g, c0 * taps:c1 * taps], x_part.reshape(c_in_g, -1),
                              out=block_cols)
            col2im(block_cols.reshape((c1 - c0,) + kernel + part_spatial), bias, out[n],
                   g * c_out_g + c0, o_first[0], o_first[1], o_count[0], o_count[1],
                   stride, dilation, tuple(task_pad))

    threads = numba.get_num_threads()
    shares = [tasks[t::threads] for t in range(min(threads, len(tasks)))]
    with single_threaded_blas():
        pending = [_worker_pool().submit(work, share) for share in shares[1:]]
        work(shares[0])
        for future in pending:
            future.result()


def _drop_leading_dim(geometry):
    return dataclasses.replace(geometry, **{
        f.name: getattr(geometry, f.name)[1:]
        for f in dataclasses.fields(geometry)
        if isinstance(getattr(geometry, f.name), tuple)})


def _run_by_leading_slices(x, w, bias, out, geometry, strategy, prepare) -> None:
    """Rank >= 4: sum rank-(n-1) transposed convolutions over the first dim.

    Input slice ``i`` through kernel slice ``k`` lands on output slice
    ``i*s + k*d - pad_before``; the sum runs in a fixed order, so the result
    is deterministic.
    """
    inner = _drop_leading_dim(geometry)
    s, d, p = geometry.stride[0], geometry.dilation[0], geometry.pad_before[0]
    out_size = geometry.out_spatial[0]
    x_slices = np.ascontiguousarray(np.moveaxis(x, 2, 0))
    w_slices = np.ascontiguousarray(np.moveaxis(w, 2, 0))
    no_bias = np.zeros_like(bias)
    partial = np.empty(out.shape[:2] + out.shape[3:], dtype=out.dtype)
    out[...] = bias.reshape((-1,) + (1,) * geometry.rank)
    for k in range(geometry.kernel[0]):
        for i in range(geometry.in_spatial[0]):
            o = i * s + k * d - p
            if 0 <= o < out_size:
                run(x_slices[i], w_slices[k], no_bias, partial, inner, strategy, prepare)
                out[:, :, o] += partial
