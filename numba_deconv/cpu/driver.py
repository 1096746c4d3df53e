"""Host side of the CPU backend: lay out a call's work once, then launch its kernel.

``numba_deconv._dispatch`` decides which kernel runs (see
:func:`~numba_deconv._dispatch.choose_kernel`); :mod:`.work_split` turns that
choice into a :class:`~.work_split.Launch` (the arrays' rank-3 shapes and the
kernel's work split, worked out once per call shape and kept by the
dispatcher), and :func:`run` launches it on arrays that
``numba_deconv.api`` has checked and laid out: channels first, batched,
C-contiguous, writable, all in the working dtype.

The kernels, by strategy:

``gather`` (every output gathers its taps straight from ``x``; no BLAS)
    ``phase_tiles`` (:func:`.tiled.direct_tiled`): each output phase a
    stride-1 correlation in register tiles, for enough channel pairs;
    ``planes`` (:func:`.kernels.direct_planes`): short rows with few
    channels, one long loop per tap over zero-padded planes; ``rows``
    (:func:`.kernels.direct_rows`): longer rows with few channels; and
    ``rows_serial``, the row kernel on the calling thread alone for tiny
    calls.
``columns`` (the matrix product ``cols = W^T X``, then folded into the output)
    ``column_tiles`` (:func:`.columns.columns_tiled`): real data, register
    tiles along the weights, the whole batch at once; ``tap_rows``
    (:mod:`.tap_rows`): real data with few output channels, register tiles
    along the input positions, a row per output channel and tap; ``blas``:
    complex data, one BLAS product per image and block of output channels
    in our own threads, each folded by :func:`.kernels.col2im`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math

import numpy as np
from numba import from_dtype, types

from .. import _compiled, _outputs, config
from ._blas import run_blas, run_blas_last
from . import tiering, transpose
from .baseline import (columns_in_order, conv_in_order, conv_in_order_complex, gather_in_order,
                       tiles_in_order, tiles_in_registers, views_in_order,
                       weight_grad_in_order)
from .columns import TILE_POSITIONS, columns_tiled, fold_sources, gather_positions, pack_weights
from .correlate import conv_planes, conv_tiles
from .depthwise_last import (channel_pitch, depthwise_last, depthwise_last_staged,
                             stages_outputs)
from .kernels import (col2im, col2im_last, direct_planes, direct_rows, row_geometry, rows_tiny,
                      rows_tiny_last)
from .launch import NEVER, parallel, poll_signatures, serial, thread_count
from .one_tap_last import (by_tap, laid_out_weights, one_tap_last, one_tap_split,
                           takes_one_tap_last)
from .tap_rows import tap_rows_fold, tap_rows_products
from .tiled import CHANNELS_FIRST, CHANNELS_LAST, COMPLEX_PARTS, direct_tiled
from .tile_products import TILE_ROWS
from .weight_grad import weight_dots, weight_tiles
from .weight_table import fill_weight_table, weight_table

_log = logging.getLogger("numba_deconv")


def _run_rows_serial(x, w, bias, out, launch, prepared=None):
    serial(direct_rows, x, w, bias, out, launch.groups, launch.stride, launch.dilation,
           launch.pad, 1)
    return True


def _run_rows(x, w, bias, out, launch, prepared=None):
    parallel(direct_rows, x, w, bias, out, launch.groups, launch.stride, launch.dilation,
             launch.pad, launch.row_chunks, multiply_adds=launch.multiply_adds)
    return True


def _run_planes(x, w, bias, out, launch, prepared=None):
    # Zero padding is exact for finite weights only (0 * inf is NaN).
    if not np.isfinite(w).all():
        return False
    parallel(direct_planes, x, w, bias, out, launch.groups, launch.stride, launch.dilation,
             launch.pad, *launch.layout, multiply_adds=launch.multiply_adds)
    return True


def _prepare_phase_tiles(w, launch):
    tiled = launch.layout
    return weight_table(w, launch.groups, tiled.tap_index, tiled.tap_counts)


def _run_phase_tiles(x, w, bias, out, launch, prepared=None, layout=CHANNELS_FIRST):
    tiled = launch.layout
    # The weight table counts the weights that are not finite as it is
    # built: the zero padding of the input window is exact only without.
    weights, non_finite = prepared or _prepare_phase_tiles(w, launch)
    if non_finite:
        return False
    # Channels last, every group of a stretch in one task where the layout
    # has that split (groups of channels short of whole vectors).
    together = layout == CHANNELS_LAST and tiled.together_chunks > 0
    chunks, block_parts, sub = ((tiled.together_chunks, 1, tiled.together_sub) if together
                                else (tiled.chunks, tiled.block_parts, tiled.sub))
    parallel(direct_tiled, x, weights, tiled.offsets, tiled.tap_copy, tiled.copy_shift,
             tiled.tap_counts, tiled.phases, bias, out, tiled.pitch, tiled.shift_max,
             launch.stride, chunks, block_parts, sub, layout,
             out.nbytes >= config.STREAM_OUTPUT_MIN_BYTES, together,
             multiply_adds=launch.multiply_adds)
    return True


def _prepare_column_tiles(w, launch):
    return pack_weights(w, launch.groups, launch.layout.channel_block)


def _run_column_tiles(x, w, bias, out, launch, prepared=None, layout=CHANNELS_FIRST):
    run_columns_tiled(x, w, prepared, bias, out, launch, launch.layout,
                      math.prod(launch.x_shape[2:]), layout == CHANNELS_LAST, False)
    return True


def run_columns_tiled(x, w, prepacked, bias, out, launch, columns, image, channels_last,
                      complex_parts):
    """:func:`.columns.gather_positions`, then :func:`.columns.columns_tiled`
    with ``columns`` (a :class:`.work_split.ColumnsLayout`) on ``x`` of
    ``image`` positions an image (its parts', with ``complex_parts``);
    ``prepacked`` the weights as :func:`.columns.pack_weights` lays them
    out for ``columns``, or None."""
    groups = launch.groups
    c_in_g = w.shape[0] // groups
    if prepacked is None:
        prepacked, in_place, k_block = _NO_PACKED[x.dtype], columns.in_place, columns.k_block
        ahead_rows = 0
    else:
        # Weights packed once are read as one stream, in place or not: a
        # block of all input channels keeps the accumulators in registers.
        in_place, k_block = False, c_in_g if columns.in_place else columns.k_block
        ahead_rows = config.COLUMNS_PREPACKED_PREFETCH_ROWS
    xs = np.empty((groups, -(-x.shape[0] * image // TILE_POSITIONS), c_in_g, TILE_POSITIONS),
                  dtype=x.dtype)
    parallel(gather_positions, x, xs, channels_last, 2 if complex_parts and channels_last else 1,
             multiply_adds=xs.size)
    parallel(columns_tiled, xs, w, prepacked, bias, out, *columns.fold.tables(),
             columns.channel_block, columns.image_parts, image, k_block, columns.pitch,
             in_place, channels_last, complex_parts, ahead_rows,
             config.COLUMNS_FOLD_LAST_BYTES, multiply_adds=launch.multiply_adds)


def _run_tap_rows(x, w, bias, out, launch, prepared=None, layout=CHANNELS_FIRST):
    tap_rows = launch.layout
    cols = np.empty((launch.out_shape[1] * math.prod(w.shape[2:]), tap_rows.tap_pitch),
                    dtype=x.dtype)
    parallel(tap_rows_products, x, w, cols, launch.groups, tap_rows.stretch_tiles, layout,
             config.TAP_ROWS_PREFETCH_ROWS, multiply_adds=launch.multiply_adds)
    # The fold's adds cost more than the products' multiply-adds (an index
    # and a gather each): it runs on as many threads as the products.
    parallel(tap_rows_fold, cols, *tap_rows.fold.tables(), bias, out,
             tap_rows.image_pitch, tap_rows.fold_chunk, layout,
             multiply_adds=launch.multiply_adds)
    return True


#: The columns kernel's ``prepacked`` where there are none.
_NO_PACKED = {np.dtype(t): np.zeros((0, 0, 0, 0), dtype=t) for t in (np.float32, np.float64)}


def _run_conv_tiles(x, weights, bias, out, launch, prepared=None, parts=False):
    conv = launch.layout
    parallel(conv_tiles, x, weights, conv.offsets, conv.planes, conv.plane_of, bias, out,
             conv.pitch, launch.pad, launch.stride, conv.chunks, conv.block_parts, conv.sub,
             parts, multiply_adds=launch.multiply_adds)
    return True


def _run_conv_planes(x, w, bias, out, launch, prepared=None):
    conv = launch.layout
    parallel(conv_planes, x, w, conv.offsets, conv.planes, conv.plane_of, bias, out,
             conv.pitch, launch.pad, launch.stride, conv.chunks, conv.sub,
             multiply_adds=launch.multiply_adds)
    return True


def _run_conv_planes_serial(x, w, bias, out, launch, prepared=None):
    conv = launch.layout
    serial(conv_planes, x, w, conv.offsets, conv.planes, conv.plane_of, bias, out, conv.pitch,
           launch.pad, launch.stride, conv.chunks, conv.sub)
    return True


#: Each kernel's launcher: it runs the kernel on rank-3 arrays and returns
#: False, having computed nothing, where the kernel cannot be exact (weights
#: that are not finite, for kernels that multiply zero padding). ``prepared``
#: is what :data:`PREPARERS` made of the weights, for callers that repeat
#: a call with one weight (:class:`numba_deconv.Plan`).
LAUNCHERS = {"rows_serial": _run_rows_serial, "rows": _run_rows, "planes": _run_planes,
             "phase_tiles": _run_phase_tiles, "column_tiles": _run_column_tiles,
             "tap_rows": _run_tap_rows,
             "blas": run_blas, "conv_tiles": _run_conv_tiles, "conv_planes": _run_conv_planes,
             "conv_planes_serial": _run_conv_planes_serial}


#: The kernels that lay the weights out on every call, and how: a caller
#: that repeats a call keeps the result (``run``'s ``prepared``).
PREPARERS = {"phase_tiles": _prepare_phase_tiles, "column_tiles": _prepare_column_tiles,
             "one_tap_last": lambda w, launch: laid_out_weights(w, launch.groups)}


def run(route, x, w, bias, out, geometry, prepared=None, channels_last=False) -> None:
    """Compute into ``out`` (N, C_out, *O) from ``x`` (N, C_in, *I) along
    ``route`` (a :class:`numba_deconv._dispatch.Route`), compiling or loading
    each kernel as it is first needed and recording it. ``prepared``, a
    dict kept by a caller that repeats calls with the same weight ``w``,
    holds the weights as each kernel lays them out, made here on first use.

    With ``channels_last``, ``x`` is (N, *I, C_in) and ``out`` (N, *O,
    C_out): the phase tiles and the columns read and write them as they
    are (a call that moves a spatial dim last moves it before the
    channels: :func:`_ran_moved_in_place`), once compiled (the first
    call, which may run the baseline while they compile, and other
    kernels run channels first between parallel transposes); so do BLAS's
    products and their fold (:func:`._blas.run_blas_last`), from the first
    call on.
    """
    if channels_last:
        # One channel or one position each way lies as channels first: the
        # reshapes below move nothing, and the channels-first kernels are
        # faster than the channels-last ones' transposes of single channels.
        as_first = (transpose.same_order(x.shape[-1], x.shape[1:-1])
                    and transpose.same_order(out.shape[-1], out.shape[1:-1]))
        if not as_first and route.last_dim is not None and _ran_moved_in_place(
                route, x, w, bias, out, prepared):
            return
        # BLAS's products, the same on every call (first calls included:
        # a product's shape can change the last bits BLAS computes).
        blas = (not as_first and route.kernel == "blas" and route.inner is None
                and route.last_dim is None)
        if blas and route.launch.layout.block * x.itemsize >= config.BLAS_LAST_MIN_BLOCK_BYTES:
            launch = route.launch
            x_shape, out_shape, w3 = launch.x_shape, launch.out_shape, w.reshape(launch.w_shape)
            key = route.variant + (route.kernel,)
            by_numpy = (key not in _compiled.recorded()
                        and tiering.folds_by_numpy(x, w3, bias, kernel_signatures))
            if not by_numpy:
                _compiled.ensure(key, compile_kernel, route.kernel, x.dtype)
            run_blas_last(x.reshape(x_shape[:1] + x_shape[2:] + x_shape[1:2]), w3, bias,
                          out.reshape(out_shape[:1] + out_shape[2:] + out_shape[1:2]), launch,
                          by_numpy=by_numpy)
            return
        if as_first or not _ran_in_place(route, x, w, bias, out, prepared, CHANNELS_LAST):
            # BLAS with blocks of 1-2 channels reads the input where it
            # lies, as the transposed operand of its products (187 -> 8
            # channels, before run_blas_last: the input's transpose was a
            # fifth of the call); the kernels take C-contiguous arrays.
            x_first = np.moveaxis(x, -1, 1) if blas else transpose.to_channels_first(x)
            out_first = transpose.channels_first_room(out)
            run(route, x_first, w, bias, out_first, geometry, prepared)
            transpose.to_channels_last(out_first, out)
        return
    if route.last_dim is not None:
        _run_with_dim_last(route, x, w, bias, out, prepared)
        return
    if route.inner is not None:
        _run_by_leading_slices(route, x, w, bias, out, geometry)
        return
    launch = route.launch
    x3, w3 = x.reshape(launch.x_shape), w.reshape(launch.w_shape)
    out3 = out.reshape(launch.out_shape)
    for kernel in (route.kernel, route.fallback):
        key = route.variant + (kernel,)
        if key not in _compiled.recorded():
            done = tiering.stand_in(kernel, key, launch, x3, w3, bias, out3, compile_kernel,
                                    kernel_signatures)
            if done is not None:
                if done:
                    return
                continue
        _compiled.ensure(key, compile_kernel, kernel, x.dtype)
        if LAUNCHERS[kernel](x3, w3, bias, out3, launch, _laid_out(kernel, w3, launch, prepared)):
            return


def _laid_out(kernel, w3, launch, prepared):
    """The weights as ``kernel`` lays them out, kept in ``prepared`` (None:
    a kernel that reads ``w`` as it is, or no caller to keep them)."""
    if prepared is None or kernel not in PREPARERS:
        return None
    made_for, laid_out = prepared.get(kernel, (None, None))
    if made_for is not launch:  # a new thread count may lay out anew
        laid_out = PREPARERS[kernel](w3, launch)
        prepared[kernel] = launch, laid_out
    return laid_out


def run_parts(route, x, w, bias, out, geometry, prepared=None) -> None:
    """Complex ``x`` (N, C_in, *I) into complex ``out`` (N, C_out, *O),
    channels first, along ``route``, the route of their real twin
    (``numba_deconv._dispatch.real_twin``) with its weight ``w`` and bias
    ``bias``: the phase tiles, once compiled, read and write the complex
    arrays' parts where they lie; other kernels run on the twin's
    channels, split from ``x`` and merged into ``out`` in parallel."""
    real = w.dtype
    if _ran_in_place(route, x.view(real), w, bias, out.view(real), prepared, COMPLEX_PARTS):
        return
    out_parts = transpose.parts_room(out)
    run(route, transpose.to_parts(x), w, bias, out_parts, geometry, prepared)
    transpose.from_parts(out_parts, out)


#: The kernels that read and write data as it lies in each layout.
IN_PLACE = {CHANNELS_LAST: ("phase_tiles", "column_tiles", "tap_rows"),
            COMPLEX_PARTS: ("phase_tiles",)}


def _ran_in_place(route, x, w, bias, out, prepared, layout) -> bool:
    """Whether ``route``'s kernel ran on ``x`` and ``out`` as they lie in
    ``layout`` (channels last, or a complex pair of channels per channel,
    see :data:`.tiled.COMPLEX_PARTS`): the kernels of :data:`IN_PLACE`,
    and depthwise calls channels last by
    :func:`.depthwise_last.depthwise_last` with the sums of the route's
    kernel (:data:`DEPTHWISE_LAST`); compiled in this process, finite
    weights (the columns and the tap rows take any)."""
    if route.inner is not None or route.variant + (route.kernel,) not in _compiled.recorded():
        return False
    launch = route.launch
    if layout == CHANNELS_LAST and route.kernel in DEPTHWISE_LAST:
        paired, most_multiplier = DEPTHWISE_LAST[route.kernel]
        if launch.w_shape[1] <= most_multiplier and _ran_depthwise_last(
                x, w, bias, out, launch, paired, route.variant):
            return True
    if (layout == CHANNELS_LAST and route.kernel in ONE_TAP_LAST
            and _ran_one_tap_last(x, w, bias, out, launch, prepared, route.variant)):
        return True
    if route.kernel not in IN_PLACE[layout]:
        return False
    x_shape, out_shape = launch.x_shape, launch.out_shape
    if layout == CHANNELS_LAST:
        x_shape = x_shape[:1] + x_shape[2:] + x_shape[1:2]
        out_shape = out_shape[:1] + out_shape[2:] + out_shape[1:2]
    w3 = w.reshape(launch.w_shape)
    return LAUNCHERS[route.kernel](x.reshape(x_shape), w3, bias, out.reshape(out_shape),
                                   launch, _laid_out(route.kernel, w3, launch, prepared),
                                   layout=layout)


#: The kernels whose depthwise calls :func:`.depthwise_last.depthwise_last`
#: runs on channels-last data with their sums (the same bits): whether it
#: takes the taps of a W phase two at a time (the plane kernel) or one at a
#: time in order (the row kernel, the phase tiles), and for at most how
#: many output channels a group. The phase tiles read and write channels last
#: themselves, in register tiles of 8 output channels: a group of 2 or 4
#: fills them poorly (45 -> 90 channels k4 on 51x113: 2.1 against 4.6 ms,
#: 16 -> 64 k3 s2 0.55 against 0.93), one of 8 or more well (16 -> 128 k3:
#: 0.81 against 0.41).
DEPTHWISE_LAST = {"planes": (True, math.inf), "rows": (False, math.inf),
                  "phase_tiles": (False, TILE_ROWS // 2)}


def _ran_depthwise_last(x, w, bias, out, launch, paired, variant) -> bool:
    """Whether :func:`.depthwise_last.depthwise_last` (or its staged
    form) ran on the channels-last ``x`` and ``out``: a depthwise call (one
    input channel per group) with finite weights, as the channels-first
    kernels take them, once the kernel is compiled for the route's
    ``variant``. While a helper process compiles it (see :mod:`.tiering`),
    the route's own kernel computes the same bits."""
    n_batch, c_in = launch.x_shape[:2]
    c_out = launch.out_shape[1]
    if launch.groups != c_in or not np.isfinite(w).all():
        return False
    staged = stages_outputs(out.dtype, c_out, launch.w_shape[2:], launch.stride, out.nbytes)
    kernel = "depthwise_last_staged" if staged else "depthwise_last"
    key = variant + (kernel,)
    if key not in _compiled.recorded():
        if tiering.compiling_in_helper(kernel, out.dtype, kernel_signatures,
                                       "the route's own kernel"):
            return False
        _compiled.ensure(key, compile_kernel, kernel, out.dtype)
    w_t = np.zeros(launch.w_shape[2:] + (channel_pitch(c_out, w.itemsize),), dtype=w.dtype)
    w_t[..., :c_out] = np.moveaxis(w.reshape((c_out,) + launch.w_shape[2:]), 0, -1)
    parallel(depthwise_last_staged if staged else depthwise_last,
             x.reshape((n_batch,) + launch.x_shape[2:] + (c_in,)), w_t, bias,
             out.reshape((n_batch,) + launch.out_shape[2:] + (c_out,)), launch.stride,
             launch.dilation, launch.pad, paired, launch.last_row_parts,
             launch.last_row_block, config.DEPTHWISE_LAST_RING_BYTES,
             multiply_adds=launch.multiply_adds)
    return True


#: The kernels whose calls with one or a few taps per output phase
#: :func:`.one_tap_last.one_tap_last` runs on channels-last data with
#: their sums (the same bits).
ONE_TAP_LAST = ("phase_tiles",)


def _ran_one_tap_last(x, w, bias, out, launch, prepared, variant) -> bool:
    """Whether :func:`.one_tap_last.one_tap_last` ran on the channels-last
    ``x`` and ``out``: a call it takes (:func:`.one_tap_last.takes_one_tap_last`)
    with finite weights (as the phase tiles take them), once the kernel is
    compiled for the route's ``variant`` (meanwhile the phase tiles)."""
    if not takes_one_tap_last(out.dtype, launch.x_shape[1] // launch.groups, launch.w_shape[1],
                              launch.w_shape[2:], launch.stride, launch.dilation,
                              launch.x_shape[-1]):
        return False
    key = variant + ("one_tap_last",)
    if key not in _compiled.recorded():
        if tiering.compiling_in_helper("one_tap_last", out.dtype, kernel_signatures,
                                       "the route's own kernel"):
            return False
        _compiled.ensure(key, compile_kernel, "one_tap_last", out.dtype)
    w3 = w.reshape(launch.w_shape)
    w_t, finite = (_laid_out("one_tap_last", w3, launch, prepared)
                   or laid_out_weights(w3, launch.groups))
    if not finite:
        return False
    c_in, c_out = launch.x_shape[1], launch.out_shape[1]
    x_shape, out_shape, stride, parts, row_block = one_tap_split(
        launch.x_shape[:1] + launch.x_shape[2:] + (c_in,),
        launch.out_shape[:1] + launch.out_shape[2:] + (c_out,), launch.w_shape[2:],
        launch.stride, launch.pad, thread_count())
    args = (x.reshape(x_shape), w_t, bias, out.reshape(out_shape), stride, launch.dilation,
            launch.pad, parts, row_block)
    if (out.nbytes < config.ONE_TAP_LAST_PARALLEL_MIN_BYTES
            and launch.multiply_adds < config.ONE_TAP_LAST_PARALLEL_MIN_MULTIPLY_ADDS):
        serial(one_tap_last, *args)
    else:
        parallel(one_tap_last, *args, multiply_adds=launch.multiply_adds)
    return True


def serial_runner(route, dtype, out_shape, channels_last=False):
    """``run(x, w, bias, out=None) -> result``: what :func:`run` computes
    along ``route`` into ``out`` or a new array of ``out_shape``, with the
    Python layers cut away, for tiny calls; None unless ``route`` is the
    serial row kernel
    and :func:`.kernels.rows_tiny` is compiled in this process for
    ``dtype`` and ``x`` of ``len(out_shape)`` dims. With ``channels_last``,
    ``x`` and ``out`` as they lie channels last, through
    :func:`.kernels.rows_tiny_last`: compiled here on first need (None
    meanwhile, while a helper process compiles it).

    ``x``, ``w``, ``bias`` and ``out`` must be C-contiguous, aligned,
    writable arrays of ``dtype``, ``x`` of the route's number of elements
    in ``len(out_shape)`` dims, ``out`` of ``out_shape`` and sharing no
    memory with the others (the callers check them): others would make
    Numba compile the kernel anew, in the call. ``w`` may come in the
    kernel's own shape (``run.w_shape``), which a caller that keeps it
    spares a reshape per call. ``run.kernel`` and ``run.geometry`` are the
    compiled kernel and its last argument, for a caller that allocates
    the output itself (``kernel(x, w, bias, result, geometry)``).
    """
    if route.inner is not None or route.kernel != "rows_serial" or (
            route.variant + (route.kernel,) not in _compiled.recorded()):
        return None
    signature = _tiny_signature(dtype, len(out_shape))
    if signature not in rows_tiny.overloads:
        return None
    tiny = rows_tiny
    if channels_last:
        key = route.variant + ("rows_tiny_last",)
        if key not in _compiled.recorded():
            if tiering.compiling_in_helper("rows_tiny_last", dtype, kernel_signatures,
                                           "the transposes around the row kernel"):
                return None
            _compiled.ensure(key, compile_kernel, "rows_tiny_last", dtype)
        tiny = rows_tiny_last
    launch = route.launch
    w_shape = launch.w_shape
    geometry = row_geometry(launch.x_shape, w_shape, launch.out_shape, launch.groups,
                            launch.stride, launch.dilation, launch.pad)
    out_bytes = math.prod(out_shape) * dtype.itemsize
    recycled = out_bytes >= config.OUTPUT_CACHE_MIN_BYTES
    # The compiled function itself: the callers have checked every type, so
    # Numba's dispatch, which types the arguments anew, is skipped.
    compiled = tiny.overloads[signature].entry_point

    def run_serial(x, w, bias, out=None):
        # Below the recycled sizes np.empty is the cheapest output there is.
        result = out if out is not None else (
            _outputs.new_output(out_shape, dtype, out_bytes) if recycled
            else np.empty(out_shape, dtype))
        compiled(x, w if w.shape == w_shape else w.reshape(w_shape), bias, result, geometry)
        return result
    run_serial.w_shape, run_serial.kernel, run_serial.geometry = w_shape, compiled, geometry
    run_serial.recycled = recycled
    return run_serial


def conv_serial_runner(route, dtype, out_shape):
    """``run(x, w, bias, out=None) -> result``: ``conv`` along ``route``
    into ``out`` or a new array of ``out_shape``, the serial plane kernel
    called directly, for tiny calls; None unless ``route`` runs
    ``conv_planes_serial`` and it is compiled in this process for ``dtype``.

    The arrays as :func:`serial_runner` requires them, ``x`` channels first
    (batched or not), ``w`` (C_out, C_in/groups, *kernel): the same kernel
    on the same arrays as :func:`run_conv`, so the same bits.
    """
    if route.inner is not None or route.kernel != "conv_planes_serial" or (
            route.variant + (route.kernel,) not in _compiled.recorded()):
        return None
    ((dispatcher, signature),) = kernel_signatures(route.kernel, dtype)
    if signature not in dispatcher.overloads:
        return None
    compiled = dispatcher.overloads[signature].entry_point  # types checked by the callers
    launch = route.launch
    conv = launch.layout
    x_shape, w_shape, o_shape = launch.x_shape, launch.w_shape, launch.out_shape
    tables = (conv.offsets, conv.planes, conv.plane_of)
    sizes = (conv.pitch, launch.pad, launch.stride, conv.chunks, conv.sub)
    out_bytes = math.prod(out_shape) * dtype.itemsize
    recycled = out_bytes >= config.OUTPUT_CACHE_MIN_BYTES

    def run_serial(x, w, bias, out=None):
        result = out if out is not None else (
            _outputs.new_output(out_shape, dtype, out_bytes) if recycled
            else np.empty(out_shape, dtype))
        # A task counter of its own: calls from several threads share nothing.
        compiled(x.reshape(x_shape), w.reshape(w_shape), *tables, bias,
                 result.reshape(o_shape), *sizes, np.zeros(1, np.int64), NEVER)
        return result
    return run_serial


def _tiny_signature(dtype, ndim):
    """:func:`.kernels.rows_tiny`'s signature for ``x`` and ``out`` of
    ``ndim`` dims."""
    scalar = from_dtype(np.dtype(dtype))
    array = types.Array(scalar, ndim, "C")
    return (array, types.Array(scalar, 5, "C"), types.Array(scalar, 1, "C"), array,
            types.Array(types.int64, 1, "C"))


def conv_weights(route, w: np.ndarray):
    """``conv``'s weights (C_out, C_in/groups, *kernel) as the kernel of
    ``route`` reads them: the tiles' weight table (the weights of the
    transposed convolution, input and output channels swapped per group, in
    register-tile order), else the weights themselves. Made once per
    weight by callers that repeat a call, who keep them once
    :func:`conv_weights_laid_out`.

    Where the tiles are neither loaded nor in the on-disk cache, the
    weights themselves, lifted to rank 3: :func:`run_conv` lays them out
    once the tiles are there, and until then the baseline may stand in
    (:mod:`.tiering`), which reads them so."""
    launch = route.launch
    w3 = w.reshape(launch.w_shape)
    key = route.variant + (route.kernel,)
    if route.kernel != "conv_tiles" or (
            key not in _compiled.recorded()
            and not tiering.on_disk(kernel_signatures(route.kernel, w.dtype))):
        return w3
    _compiled.ensure(key, compile_kernel, route.kernel, w.dtype)
    groups = launch.groups
    c_out, c_in_g = w3.shape[:2]
    swapped = np.ascontiguousarray(
        w3.reshape((groups, c_out // groups, c_in_g) + w3.shape[2:]).swapaxes(1, 2)
        .reshape((groups * c_in_g, c_out // groups) + w3.shape[2:]))
    tap_index = launch.layout.tap_index
    table, _ = weight_table(swapped, groups, tap_index,
                            np.array([tap_index.shape[1]], dtype=np.int64))
    return table


def conv_weights_laid_out(route, weights) -> bool:
    """Whether ``weights`` from :func:`conv_weights` are laid out for
    ``route``'s kernel, not left as they are until it loads."""
    return route.kernel != "conv_tiles" or weights.ndim == 2


def run_conv(route, x, weights, bias, out) -> None:
    """``conv`` into ``out`` (N, C_out, *O) from ``x`` (N, C_in, *I) along
    ``route``, with the weights from :func:`conv_weights`; on a cold cache
    by the baseline while a helper compiles the kernel (:mod:`.tiering`)."""
    launch = route.launch
    key = route.variant + (route.kernel,)
    x3, out3 = x.reshape(launch.x_shape), out.reshape(launch.out_shape)
    as_they_are = weights.ndim == len(launch.w_shape)  # (the tiles': until they load)
    if key not in _compiled.recorded() and as_they_are and tiering.stand_in(
            route.kernel, key, launch, x3, weights, bias, out3, compile_kernel,
            kernel_signatures):
        return
    _compiled.ensure(key, compile_kernel, route.kernel, x.dtype)
    if not conv_weights_laid_out(route, weights):
        weights = conv_weights(route, weights)
    LAUNCHERS[route.kernel](x3, weights, bias, out3, launch)


def run_conv_parts(route, x, weights, bias, out) -> None:
    """:func:`run_conv` of complex ``x`` into complex ``out``, channels
    first, along the route of their real twin with its weights and bias:
    the ``conv`` tiles read and write the complex arrays' parts where they
    lie; other kernels take the twin's channels split and merged."""
    if not (route.kernel == "conv_tiles" and conv_weights_laid_out(route, weights)):
        # (The tiles not yet loaded: their baseline may stand in, on the twin's channels.)
        out_parts = transpose.parts_room(out)
        run_conv(route, transpose.to_parts(x), weights, bias, out_parts)
        transpose.from_parts(out_parts, out)
        return
    launch = route.launch
    _compiled.ensure(route.variant + (route.kernel,), compile_kernel, route.kernel, weights.dtype)
    real = weights.dtype
    LAUNCHERS[route.kernel](x.view(real).reshape(launch.x_shape), weights, bias,
                            out.view(real).reshape(launch.out_shape), launch, parts=True)


def kernel_signatures(kernel: str, dtype) -> list:
    """``(dispatcher, signature)`` pairs that make up ``kernel`` for ``dtype``,
    with exactly the argument types its launcher passes."""
    scalar = from_dtype(np.dtype(dtype))
    triple = types.UniTuple(types.int64, 3)
    count = types.int64
    arr1, arr2, arr3, arr4, arr5, arr7 = (types.Array(scalar, ndim, "C")
                                          for ndim in (1, 2, 3, 4, 5, 7))
    index1, index2, index3 = (types.Array(types.int64, ndim, "C") for ndim in (1, 2, 3))
    cancel = (types.Array(types.uint8, 1, "C"),)  # the prange kernels' flag (.launch)
    tasks = (types.Array(types.int64, 1, "C"),) + cancel  # the task kernels' counter and flag
    direct = (arr5, arr5, arr1, arr5, count, triple, triple, triple)
    tiled = ((arr5, arr2, index2, index2, index1, index1, index2, arr1, arr5) + (triple,) * 3
             + (count,) * 4)
    conv = (index1, index2, index1, arr1, arr5) + (triple,) * 3
    table = (arr5, arr2, index3, index1, count, index1)
    real = scalar in (types.float32, types.float64)  # register tiles are real only
    depthwise = (arr5, arr4, arr1, arr5) + (triple,) * 3 + (types.boolean,) + (count,) * 3 + tasks
    return {
        "rows_serial": [(direct_rows, direct + (count,) + tasks)] + (
            [(rows_tiny, _tiny_signature(dtype, ndim)) for ndim in range(2, 6)] if real
            else []),
        # Channels last only: (N, *I, C) or unbatched (*I, C), ranks 1-3.
        "rows_tiny_last": [(rows_tiny_last, _tiny_signature(dtype, ndim)) for ndim in range(2, 6)]
        if real else [],
        "rows": [(direct_rows, direct + (count,) + tasks)],
        "planes": [(direct_planes, direct + (count, count) + tasks)],
        "phase_tiles": [(direct_tiled, tiled + (types.boolean,) * 2 + tasks),
                        (fill_weight_table, table + tasks)] if real else [],
        # Channels last only, depthwise calls of the three kernels above.
        "depthwise_last": [(depthwise_last, depthwise)],
        "depthwise_last_staged": [(depthwise_last_staged, depthwise)] if real else [],
        "one_tap_last": [(one_tap_last, (arr5, arr5, arr1, arr5) + (triple,) * 3
                          + (count,) * 2 + tasks), (by_tap, (arr5, count, arr5))]
        if real else [],
        "column_tiles": [(fold_sources, (count,) + (triple,) * 6 + (count,)),
                         (gather_positions, (arr5, arr4, types.boolean, count) + tasks),
                         (columns_tiled, (arr4, arr5, arr4, arr1, arr5, index2, index1)
                          + (count,) * 5
                          + (types.boolean,) * 3 + (count,) * 2 + tasks),
                         (pack_weights, (arr5, count, count))] if real else [],
        "tap_rows": [(fold_sources, (count,) + (triple,) * 6 + (count,)),
                     (tap_rows_products, (arr5, arr5, arr2) + (count,) * 4 + tasks),
                     (tap_rows_fold, (arr2, index2, index1, arr1, arr5) + (count,) * 3
                      + tasks)]
        if real else [],
        "blas": [(col2im, (arr7, arr1, arr4) + (count,) * 5 + (triple,) * 3),
                 (col2im_last, (arr5, arr1, arr4) + (count,) * 5 + (triple,) * 4)],
        "conv_tiles": [(conv_tiles, (arr5, arr2) + conv + (count,) * 3 + (types.boolean,)
                        + tasks),
                       (fill_weight_table, table + tasks)] if real else [],
        "conv_planes": [(conv_planes, (arr5, arr5) + conv + (count,) * 2 + tasks)],
        "conv_planes_serial": [(conv_planes, (arr5, arr5) + conv + (count,) * 2 + tasks)],
        "weight_tiles": [(weight_tiles, (arr5, arr5, index2, index1, index1)
                          + (triple,) * 3 + (count,) * 3 + (arr3,) + cancel)] if real else [],
        "baseline": [(gather_in_order, direct + (count,) + tasks)],
        # The layouts' moves (.transpose): channels last, complex parts.
        "transposes": transpose.move_signatures("transposes", dtype),
        "parts": transpose.move_signatures("parts", dtype) if not real else [],
        "baseline_tiles": [(tiles_in_order, direct + tasks)] if real else [],
        "baseline_tiles_registers": [(tiles_in_registers, direct + tasks)] if real else [],
        "baseline_columns": [(columns_in_order, direct + tasks)] if real else [],
        "baseline_conv": [(conv_in_order if real else conv_in_order_complex, direct + tasks)],
        # Complex calls on their arrays' real views (.real_views): the real dtype's.
        "baseline_views": [(views_in_order, direct + tasks)] if real else [],
        "baseline_weight_grad": [(weight_grad_in_order, (arr1, arr1, index1, index1)
                                  + (count,) * 7 + (types.boolean, arr3) + tasks)]
        if real else [],
        # The launcher's own: the polls of its team of threads (any dtype).
        "team_polls": poll_signatures(),
        "weight_dots": [(weight_dots, (arr5, arr5, index2, index1, index1)
                         + (triple,) * 3 + (count,) * 4 + (arr3,) + cancel)] if real else [],
    }[kernel]


def compile_kernel(kernel: str, dtype) -> None:
    """Compile ``kernel`` for ``dtype``, or load it from Numba's disk cache;
    say so on the ``numba_deconv`` logger (INFO) when it must compile,
    which takes seconds."""
    signatures = kernel_signatures(kernel, dtype)
    # Another process may be compiling it into the same cache: wait for it,
    # then load what it wrote.
    with (contextlib.nullcontext() if tiering.on_disk(signatures)
          else tiering.one_compiler(signatures, f"{kernel}-{np.dtype(dtype).name}")):
        if not tiering.on_disk(signatures):
            _log.info("compiling the %s kernel for %s: seconds, once (Numba's on-disk cache "
                      "keeps it for later processes; `python -m numba_deconv precompile` "
                      "does all ahead of time)", kernel, np.dtype(dtype).name)
        for dispatcher, signature in signatures:
            dispatcher.compile(signature)


def _run_by_leading_slices(route, x, w, bias, out, geometry) -> None:
    """Rank >= 4: sum rank-(n-1) transposed convolutions over the first dim.

    Input slice ``i`` through kernel slice ``k`` lands on output slice
    ``i*s + k*d - pad_before``; the sum runs in a fixed order, so the result
    is deterministic.
    """
    inner = drop_leading_dim(geometry)
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
                run(route.inner, x_slices[i], w_slices[k], no_bias, partial, inner)
                # (Infinities of both signs sum to NaN: a result, not an error.)
                with np.errstate(invalid="ignore", over="ignore"):
                    out[:, :, o] += partial


def _run_with_dim_last(route, x, w, bias, out, prepared) -> None:
    """``route.inner`` on ``x``, ``w`` and ``out`` with spatial dim
    ``route.last_dim`` moved last (copies by NumPy, which moves these
    narrow dims 3-4 times as fast as :func:`.transpose.swap_last_two`'s
    tiles)."""
    dim = route.last_dim
    x_moved, w_moved, out_moved = _moved_last(x, w, out, dim)
    run(route.inner, x_moved, w_moved, bias, out_moved, route.moved_geometry, prepared)
    np.copyto(out, np.moveaxis(out_moved, -1, 2 + dim))


def _moved_last(x, w, out, dim, channels_last=False):
    """Copies of ``x`` and ``w`` with spatial dim ``dim`` moved last of the
    spatial dims (before the channels, channels last), and room for
    ``out`` so moved."""
    axis, last = (1 + dim, -2) if channels_last else (2 + dim, -1)
    x_moved = np.ascontiguousarray(np.moveaxis(x, axis, last))
    w_moved = np.ascontiguousarray(np.moveaxis(w, 2 + dim, -1))
    return x_moved, w_moved, np.empty(np.moveaxis(out, axis, last).shape, dtype=out.dtype)


def _ran_moved_in_place(route, x, w, bias, out, prepared) -> bool:
    """Whether ``route.inner`` ran in place on the channels-last ``x`` and
    ``out`` with spatial dim ``route.last_dim`` moved last (before the
    channels), as :func:`_run_with_dim_last` moves it channels first: the
    same sums, and copies that move whole positions' channels instead of
    transposing them (r63, 6 -> 29 channels on 125x6 images: 0.55x the
    time, against 1.54x the channels-first time before). Only once the
    inner kernel is compiled and reads channels-last data in place."""
    inner = route.inner
    if (inner.kernel not in IN_PLACE[CHANNELS_LAST]
            or inner.variant + (inner.kernel,) not in _compiled.recorded()):
        return False
    dim = route.last_dim
    x_moved, w_moved, out_moved = _moved_last(x, w, out, dim, channels_last=True)
    if not _ran_in_place(inner, x_moved, w_moved, bias, out_moved, prepared, CHANNELS_LAST):
        return False
    np.copyto(out, np.moveaxis(out_moved, -2, 1 + dim))
    return True


def move_spatial_last(geometry, dim):
    """The geometry with spatial dim ``dim`` moved last."""
    def moved(sizes):
        return sizes[:dim] + sizes[dim + 1:] + (sizes[dim],)
    return dataclasses.replace(geometry, **{
        f.name: moved(getattr(geometry, f.name))
        for f in dataclasses.fields(geometry)
        if isinstance(getattr(geometry, f.name), tuple)})


def drop_leading_dim(geometry):
    """The geometry of one slice along the first spatial dim."""
    return dataclasses.replace(geometry, **{
        f.name: getattr(geometry, f.name)[1:]
        for f in dataclasses.fields(geometry)
        if isinstance(getattr(geometry, f.name), tuple)})
