"""The baseline kernel: quick to compile, and bitwise the same as the tuned ones.

A tuned kernel takes seconds to compile (register tiles, vector shuffles,
many specialised helpers). While it compiles in the background
(:mod:`.tiering`), calls that would run it run this kernel instead: a
short function of plain loops, which Numba compiles in 0.9-1.3 s
(:func:`gather_in_order` for the row and plane kernels,
:func:`tiles_in_order` for the phase tiles (:func:`tiles_in_registers` for
big calls), :func:`columns_in_order` for
the columns and tap-rows kernels, :func:`views_in_order` for them on the
real views of complex data, :func:`conv_in_order` for ``conv``'s kernels,
:func:`weight_grad_in_order` for the weight gradients': a cold call
compiles only its own).

It computes each output element with exactly the terms, the order and the
rounding of the kernel it stands in for, so a switch from one to the
other changes no bit of any result:

``ROWS`` (:func:`.kernels.direct_rows`, also on the calling thread alone)
    taps by ``(kd, kh)``, then input channel, then ``kw``; only the terms
    of the definition (no zero padding); ``acc += w * x`` with the same
    fastmath flags (fused into an FMA where the target fuses them).
``TILES`` (:func:`.tiled.direct_tiled`, finite weights only)
    input channel, then the taps of the output's phase by ``(kd, kh,
    kw)``; a tap whose input lies in the zero padding adds ``fma(0, w,
    acc)`` as the tiles do (which can turn a ``-0.0`` into ``0.0``), each
    product an explicit FMA as in the tiles.
``PLANES`` (:func:`.kernels.direct_planes`, finite weights only)
    as ``ROWS`` down to the input channel; then along W the taps of each
    class ``kw, kw + s_w, ...`` (one output phase) two at a time, ``acc +=
    w0 * x0 + w1 * x1``, and a last one alone, over zero-padded input rows.
``COLUMNS`` (:func:`.columns.columns_tiled`, :mod:`.tap_rows`)
    a column per tap and input position, the explicit FMAs of its input
    channels in order from zero; each output the bias, plus the columns of
    the taps that reach the input, in tap order (the fold of
    :func:`.columns.fold_sources`). On complex data's real views
    (:mod:`.real_views`, inputs without NaN) four columns a tap, one per
    pair of parts, and each output's parts ``re * re - im * im`` and ``im
    * re + re * im`` of them.
``CONV`` (:func:`.correlate.conv_tiles`, :func:`.correlate.conv_planes`)
    ``conv``'s sums: input channel, then the taps by ``(kd, kh, kw)``,
    each an explicit FMA, the taps that read the zero padding included
    (``fma(0, w, acc)``: NaN for an infinite weight, as the definition
    says, and a ``-0.0`` can turn into ``0.0``).

All but ``COLUMNS`` start from zero and add the bias last, as the tuned
kernels do; :func:`weight_grad_in_order` sums in the order of either
weight-gradient kernel (:mod:`.weight_grad`). All are task kernels
(:func:`.launch.parallel`).
"""

import numpy as np
from numba import njit

from ..config import FASTMATH
from . import atomics, simd
from .kernels import padded_row
from .simd import VECTOR_BYTES

#: The orders the baseline can sum in ...
ROWS, TILES, PLANES, COLUMNS, CONV = 0, 1, 2, 3, 4
#: ... by the tuned kernel that sums so.
ORDERS = {"rows_serial": ROWS, "rows": ROWS, "phase_tiles": TILES, "planes": PLANES,
          "tap_rows": COLUMNS, "column_tiles": COLUMNS, "conv_tiles": CONV,
          "conv_planes": CONV, "conv_planes_serial": CONV}


#: Output channels a task of the :data:`TILES`, :data:`COLUMNS` and :data:`CONV` orders
#: sums at once: each input row it copies serves them all (a task an output
#: row, the baseline ran dcgan_2d at 3.5-7 G multiply-adds a second, in
#: blocks of 8-64 channels at 12-15 G: benchmarks/TUNING.md).
TILES_CHANNELS = 16


@njit(inline="always")
def _zeroed(room):
    """``room``, a 1-D array, set to zeros and returned: ``np.zeros`` would
    compile Numba's own ``zeros`` and its fill on a cold call besides
    ``np.empty`` (0.15-0.2 s of the baseline's 1.4-2.8 s compile)."""
    for i in range(room.size):
        room[i] = 0
    return room


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def gather_in_order(x, w, bias, out, groups, stride, dilation, pad, order, claimed, cancel):
    """``out`` from ``x`` and ``w`` as the kernel of ``order`` (:data:`ROWS`
    or :data:`PLANES`) computes it, from the same arrays and arguments (rank
    3, channels first, C-contiguous; real or complex, as those kernels
    take either); a task is one output row."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    s_w, d_w, p_w = stride[2], dilation[2], pad[2]
    c_in_g = c_in // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = VECTOR_BYTES // xf.itemsize  # (simd.lanes takes real data only)
    pitch = _phase_pitch(o_w, s_w, lanes)
    acc = np.empty(min(s_w, o_w) * pitch, dtype=out.dtype)
    # PLANES: an input row at padded[lead + i], zeros around it.
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, pitch)
    padded = _zeroed(np.empty(length, dtype=x.dtype))
    dh_taps = np.empty((k_d * k_h, 3), dtype=np.int64)
    rows = n_batch * c_out * o_d * o_h
    while True:
        row = atomics.claim(claimed)
        if row >= rows or atomics.cancelled(cancel):
            break
        oh = row % o_h
        od = row // o_h % o_d
        co = row // (o_h * o_d) % c_out
        n = row // (o_h * o_d * c_out)
        g = co // c_out_g
        co_g = co - g * c_out_g
        for j in range(acc.size):
            acc[j] = 0
        # (kd, kh, channel, kw)
        for t in range(_row_taps(dh_taps, od, oh, k_d, k_h, stride, dilation, pad,
                                 (i_d, i_h, i_w), False)):
            kd, kh = dh_taps[t, 0], dh_taps[t, 1]
            for ci in range(g * c_in_g, (g + 1) * c_in_g):
                x_row = (n * c_in + ci) * i_d * i_h * i_w + dh_taps[t, 2]
                if order == PLANES:
                    for i in range(i_w):  # (a slice copy compiles 3 s longer)
                        padded[lead + i] = xf[x_row + i]
                    _planes_taps(acc, pitch, padded, lead, w, ci, co_g, kd, kh, s_w, d_w, p_w,
                                 o_w)
                    continue
                w_taps = (((ci * c_out_g + co_g) * k_d + kd) * k_h + kh) * k_w
                for kw in range(k_w):
                    offset = kw * d_w - p_w
                    phase, shift = offset % s_w, offset // s_w
                    if phase >= o_w:
                        continue
                    weight = wf[w_taps + kw]
                    # Output j of the phase comes from input j - shift.
                    n_j = (o_w - phase + s_w - 1) // s_w
                    j_lo = min(max(shift, 0), n_j)
                    j_hi = max(min(i_w + shift, n_j), j_lo)
                    at = phase * pitch
                    for j in range(np.uint64(j_hi - j_lo)):
                        acc[np.uint64(at + j_lo) + j] += (
                            weight * xf[np.uint64(x_row + j_lo - shift) + j])
        first = row * o_w
        for ow in range(o_w):
            of[first + ow] = acc[ow % s_w * pitch + ow // s_w] + bias[co]


@njit(inline="always")
def _phase_pitch(o_w, s_w, lanes):
    """The room for each W phase of an output row's sums, in whole vectors:
    ``acc[phase * pitch + j]`` holds output ``j*s_w + phase``, so that every
    tap adds to a contiguous stretch (the loops vectorise); only phases
    below ``o_w`` have outputs."""
    return -(-o_w // (s_w * lanes)) * lanes


@njit(inline="always")
def _w_taps(k_w, s_w, d_w, p_w, i_w, o_w, pitch, lead):
    """Per W tap, for :func:`tiles_in_order` and :func:`columns_in_order`
    (the same for every row and channel): where it adds (its phase's
    stretch of ``acc``), where its outputs read a zero-padded input row
    (output ``j`` of its phase reads ``row[src + j]``, the row at ``lead``),
    how many outputs its phase has (none past the row), and the outputs
    ``j_lo .. j_hi`` whose inputs lie inside the row: int64 ``(k_w, 5)``."""
    table = np.empty((k_w, 5), dtype=np.int64)
    for kw in range(k_w):
        offset = kw * d_w - p_w
        phase, shift = offset % s_w, offset // s_w
        n_j = (o_w - phase + s_w - 1) // s_w if phase < o_w else 0
        table[kw, 0] = phase * pitch
        table[kw, 1] = lead - shift
        table[kw, 2] = n_j
        table[kw, 3] = min(max(shift, 0), n_j)
        table[kw, 4] = max(min(i_w + shift, n_j), table[kw, 3])
    return table


@njit(inline="always")
def _row_taps(table, od, oh, k_d, k_h, stride, dilation, pad, in_shape, padding):
    """The ``(kd, kh)`` taps of output row ``(od, oh)`` (D and H), in order,
    into ``table`` (int64 ``(k_d * k_h, 3)``): ``kd``, ``kh`` and where the
    tap's input row starts in a channel, ``(i_dd * i_h + i_hh) * i_w``.
    Taps of another output phase are left out, and so are those whose
    input row lies outside ``x``, unless ``padding`` (then -1: the tiles
    multiply the zero padding). Returns how many."""
    i_d, i_h, i_w = in_shape
    n_taps = 0
    for kd in range(k_d):
        t_d = od + pad[0] - kd * dilation[0]
        if t_d % stride[0] != 0:
            continue  # another phase's tap
        i_dd = t_d // stride[0]
        for kh in range(k_h):
            t_h = oh + pad[1] - kh * dilation[1]
            if t_h % stride[1] != 0:
                continue
            i_hh = t_h // stride[1]
            inside = 0 <= i_dd < i_d and 0 <= i_hh < i_h
            if not (inside or padding):
                continue
            table[n_taps, 0], table[n_taps, 1] = kd, kh
            table[n_taps, 2] = (i_dd * i_h + i_hh) * i_w if inside else -1
            n_taps += 1
    return n_taps


@njit(inline="always")
def _row_task(task, o_d, o_h, blocks, groups, c_out_g):
    """Task ``task`` of :func:`tiles_in_order` and :func:`columns_in_order`:
    ``(n, g, co0, count, od, oh)``, output row ``(od, oh)`` of output
    channels ``co0 .. co0 + count`` of group ``g`` of image ``n``."""
    oh = task % o_h
    od = task // o_h % o_d
    block = task // (o_h * o_d)
    co0 = block % blocks * TILES_CHANNELS
    g = block // blocks % groups
    return (block // (blocks * groups), g, co0, min(TILES_CHANNELS, c_out_g - co0), od, oh)


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def tiles_in_order(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """:func:`gather_in_order` in the :data:`TILES` order, a kernel of its
    own (a cold call of the row kernels does not compile it). A task sums
    one output row of each of up to :data:`TILES_CHANNELS` output channels
    of a group: input channel by channel, the taps of the row's phase by
    ``(kd, kh, kw)``, each an explicit FMA into every output of its W
    phase, in vectors of the phase's outputs (:func:`_phase_pitch`; the
    lanes past a phase's outputs are scratch). A tap's input row is copied
    into a zero-padded row once for every channel of the task; a tap whose
    row lies outside the input along D or H reads zeros. The tiles add
    ``fma(0, w, acc)`` for inputs in the zero padding, which can turn a
    ``-0.0`` into ``0.0``, and so does this."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    s_w, d_w, p_w = stride[2], dilation[2], pad[2]
    c_in_g = c_in // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = simd.lanes(xf)
    zeros = simd.zeros(xf)
    pitch = _phase_pitch(o_w, s_w, lanes)
    span = min(s_w, o_w) * pitch
    acc = np.empty(TILES_CHANNELS * span, dtype=out.dtype)
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, pitch)
    padded = _zeroed(np.empty(length, dtype=x.dtype))
    w_taps_at = _w_taps(k_w, s_w, d_w, p_w, i_w, o_w, pitch, lead)
    dh_taps = np.empty((k_d * k_h, 3), dtype=np.int64)
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        for j in range(count * span):
            acc[j] = 0
        # The row's phase's (kd, kh) taps, those outside the input included.
        n_taps = _row_taps(dh_taps, od, oh, k_d, k_h, stride, dilation, pad, (i_d, i_h, i_w),
                           True)
        for ci in range(g * c_in_g, (g + 1) * c_in_g):
            x_plane = (n * c_in + ci) * i_d * i_h * i_w
            for t in range(n_taps):
                in_dh = dh_taps[t, 2] >= 0
                if in_dh:
                    x_row = x_plane + dh_taps[t, 2]
                    for i in range(i_w):
                        padded[lead + i] = xf[x_row + i]
                for c in range(count):
                    w_taps = (((ci * c_out_g + co0 + c) * k_d + dh_taps[t, 0]) * k_h
                              + dh_taps[t, 1]) * k_w
                    for kw in range(k_w):
                        at = np.uint64(c * span + w_taps_at[kw, 0])
                        src = np.uint64(w_taps_at[kw, 1])
                        weight = wf[w_taps + kw]
                        for j in range(np.uint64(0), np.uint64(w_taps_at[kw, 2]),
                                       np.uint64(lanes)):
                            inputs = simd.load(padded, src + j) if in_dh else zeros
                            simd.store(acc, at + j,
                                       simd.fma(inputs, weight, simd.load(acc, at + j)))
        for c in range(count):
            oc = g * c_out_g + co0 + c
            first = (((n * c_out + oc) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[first + ow] = acc[c * span + ow % s_w * pitch + ow // s_w] + bias[oc]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def tiles_in_registers(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """:func:`tiles_in_order`'s sums, bit for bit, faster for big calls and
    slower to compile (1.3 s against 1.0): each (kd, kh) tap's input row
    of a channel copied first (zeros where it lies outside the input along
    D or H), then each vector of a W phase's outputs summed over all the
    phase's taps in a register, for four channels at once sharing each
    input load; per output the same FMAs in the same order (input
    channel, then ``(kd, kh, kw)``)."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    s_w, d_w, p_w = stride[2], dilation[2], pad[2]
    c_in_g = c_in // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = simd.lanes(xf)
    pitch = _phase_pitch(o_w, s_w, lanes)
    span = min(s_w, o_w) * pitch
    acc = np.empty(TILES_CHANNELS * span, dtype=out.dtype)
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, pitch)
    rows_in = _zeroed(np.empty(k_d * k_h * length, dtype=x.dtype))  # a row per (kd, kh) tap
    w_taps_at = _w_taps(k_w, s_w, d_w, p_w, i_w, o_w, pitch, lead)
    # Each W phase's taps, in order (a phase past the row has none).
    n_phases = min(s_w, o_w)
    phase_taps = np.empty((n_phases, k_w), dtype=np.int64)
    phase_counts = _zeroed(np.empty(n_phases, dtype=np.int64))
    for kw in range(k_w):
        if w_taps_at[kw, 2] > 0:
            r = w_taps_at[kw, 0] // pitch
            phase_taps[r, phase_counts[r]] = kw
            phase_counts[r] += 1
    dh_taps = np.empty((k_d * k_h, 3), dtype=np.int64)
    taps = k_d * k_h * k_w
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        for j in range(count * span):
            acc[j] = 0
        # The row's phase's (kd, kh) taps, those outside the input included.
        n_taps = _row_taps(dh_taps, od, oh, k_d, k_h, stride, dilation, pad, (i_d, i_h, i_w),
                           True)
        for ci in range(g * c_in_g, (g + 1) * c_in_g):
            x_plane = (n * c_in + ci) * i_d * i_h * i_w
            for t in range(n_taps):  # (zeros for a row outside the input)
                row = t * length + lead
                if dh_taps[t, 2] >= 0:
                    for i in range(i_w):
                        rows_in[row + i] = xf[x_plane + dh_taps[t, 2] + i]
                else:
                    for i in range(i_w):
                        rows_in[row + i] = 0
            # Four channels at once, each input vector loaded once for them,
            # their sums in registers over the phase's taps (the last
            # block's spare channels compute the last one's, unstored).
            for c0 in range(0, count, 4):
                w0 = (ci * c_out_g + co0 + c0) * taps
                w1 = (ci * c_out_g + co0 + min(c0 + 1, count - 1)) * taps
                w2 = (ci * c_out_g + co0 + min(c0 + 2, count - 1)) * taps
                w3 = (ci * c_out_g + co0 + min(c0 + 3, count - 1)) * taps
                for r in range(n_phases):
                    n_j = w_taps_at[phase_taps[r, 0], 2] if phase_counts[r] else 0
                    at = np.uint64(c0 * span + r * pitch)
                    for j in range(np.uint64(0), np.uint64(n_j), np.uint64(lanes)):
                        s0 = simd.load(acc, at + j)
                        s1 = simd.load(acc, at + np.uint64(span) + j)
                        s2 = simd.load(acc, at + np.uint64(2 * span) + j)
                        s3 = simd.load(acc, at + np.uint64(3 * span) + j)
                        for t in range(n_taps):
                            tap_row = (dh_taps[t, 0] * k_h + dh_taps[t, 1]) * k_w
                            for q in range(phase_counts[r]):
                                kw = phase_taps[r, q]
                                inputs = simd.load(rows_in, np.uint64(t * length
                                                                      + w_taps_at[kw, 1]) + j)
                                s0 = simd.fma(inputs, wf[w0 + tap_row + kw], s0)
                                s1 = simd.fma(inputs, wf[w1 + tap_row + kw], s1)
                                s2 = simd.fma(inputs, wf[w2 + tap_row + kw], s2)
                                s3 = simd.fma(inputs, wf[w3 + tap_row + kw], s3)
                        simd.store(acc, at + j, s0)
                        if c0 + 1 < count:
                            simd.store(acc, at + np.uint64(span) + j, s1)
                        if c0 + 2 < count:
                            simd.store(acc, at + np.uint64(2 * span) + j, s2)
                        if c0 + 3 < count:
                            simd.store(acc, at + np.uint64(3 * span) + j, s3)
        for c in range(count):
            oc = g * c_out_g + co0 + c
            first = (((n * c_out + oc) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[first + ow] = acc[c * span + ow % s_w * pitch + ow // s_w] + bias[oc]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def columns_in_order(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """``out`` from ``x`` and ``w`` in the :data:`COLUMNS` order, a kernel of
    its own. A task sums one output row of each of up to
    :data:`TILES_CHANNELS` output channels of a group, from the bias, in
    vectors of the outputs of each W phase (:func:`_phase_pitch`): for each
    tap ``(kd, kh, kw)`` that reaches the input, in order, its column at
    the outputs it reaches (their inputs inside the row), the FMAs of the
    input channels in order from zero, the input rows of the tap's
    ``(kd, kh)`` copied once for every channel of the task."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    s_w, d_w, p_w = stride[2], dilation[2], pad[2]
    c_in_g = c_in // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = simd.lanes(xf)
    pitch = _phase_pitch(o_w, s_w, lanes)
    span = min(s_w, o_w) * pitch
    acc = np.empty(TILES_CHANNELS * span, dtype=out.dtype)
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, pitch)
    # A row of each input channel (a vector past the last: a tail vector
    # that starts inside a row reads up to a vector past it).
    rows_in = _zeroed(np.empty(c_in_g * length + lanes, dtype=x.dtype))
    w_taps_at = _w_taps(k_w, s_w, d_w, p_w, i_w, o_w, pitch, lead)
    taps = k_d * k_h * k_w
    dh_taps = np.empty((k_d * k_h, 3), dtype=np.int64)
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        for c in range(count):
            for j in range(c * span, (c + 1) * span):
                acc[j] = bias[g * c_out_g + co0 + c]
        for t in range(_row_taps(dh_taps, od, oh, k_d, k_h, stride, dilation, pad,
                                 (i_d, i_h, i_w), False)):
            kd, kh = dh_taps[t, 0], dh_taps[t, 1]
            for ci in range(c_in_g):
                x_row = (n * c_in + g * c_in_g + ci) * i_d * i_h * i_w + dh_taps[t, 2]
                for i in range(i_w):
                    rows_in[ci * length + lead + i] = xf[x_row + i]
            for c in range(count):
                # The weights of input channel ci: w_at + ci * w_step.
                w_at = ((g * c_in_g * c_out_g + co0 + c) * k_d + kd) * k_h * k_w + kh * k_w
                w_step = c_out_g * taps
                for kw in range(k_w):
                    at, src = c * span + w_taps_at[kw, 0], w_taps_at[kw, 1]
                    j_hi = w_taps_at[kw, 4]
                    for j in range(w_taps_at[kw, 3], j_hi, lanes):
                        column = simd.zeros(xf)
                        for ci in range(c_in_g):
                            column = simd.fma(simd.load(rows_in, ci * length + src + j),
                                              wf[w_at + ci * w_step + kw], column)
                        if j + lanes <= j_hi:
                            simd.store(acc, at + j, simd.add(simd.load(acc, at + j), column))
                        else:
                            simd.store_part(acc, at + j, simd.add(
                                simd.load_part(acc, at + j, j_hi - j), column), j_hi - j)
        for c in range(count):
            first = (((n * c_out + g * c_out_g + co0 + c) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[first + ow] = acc[c * span + ow % s_w * pitch + ow // s_w]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def views_in_order(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """:func:`columns_in_order` of a complex call on the real views of its
    arrays, as the columns kernel and the tap rows sum it there
    (:mod:`.real_views`), a kernel of its own: ``x`` (N, C_in, D, H, 2 W),
    ``w`` (C_in, C_out/groups, KD, KH, 2 KW), ``bias`` (2 C_out,) and
    ``out`` (N, C_out, OD, OH, 2 OW), each complex element its two parts
    side by side. Each output's real part is the bias's plus, for each tap
    that reaches the input, in tap order, ``re * re - im * im``, its
    imaginary part the bias's plus ``im * re + re * im`` (weight part times
    input part), each of the four products a column: the explicit FMAs of
    the input channels in order from zero. A task as in
    :func:`columns_in_order`; the input rows are copied split into their
    parts."""
    n_batch, c_in, i_d, i_h, i_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4] // 2
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4] // 2
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4] // 2
    s_w, d_w, p_w = stride[2], dilation[2], pad[2]
    c_in_g = c_in // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = simd.lanes(xf)
    pitch = _phase_pitch(o_w, s_w, lanes)
    span = min(s_w, o_w) * pitch
    acc = np.empty(2 * TILES_CHANNELS * span, dtype=out.dtype)  # a channel's real, imaginary
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, pitch)
    rows_in = _zeroed(np.empty(2 * c_in_g * length + lanes, dtype=x.dtype))  # (channel, part) rows
    columns = np.empty(4 * lanes, dtype=out.dtype)  # rr, ii, ir, ri
    w_taps_at = _w_taps(k_w, s_w, d_w, p_w, i_w, o_w, pitch, lead)
    dh_taps = np.empty((k_d * k_h, 3), dtype=np.int64)
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        for c in range(count):
            oc = g * c_out_g + co0 + c
            for j in range(span):
                acc[2 * c * span + j] = bias[2 * oc]
                acc[(2 * c + 1) * span + j] = bias[2 * oc + 1]
        for t in range(_row_taps(dh_taps, od, oh, k_d, k_h, stride, dilation, pad,
                                 (i_d, i_h, 2 * i_w), False)):
            kd, kh = dh_taps[t, 0], dh_taps[t, 1]
            for ci in range(c_in_g):
                x_row = (n * c_in + g * c_in_g + ci) * i_d * i_h * 2 * i_w + dh_taps[t, 2]
                for i in range(i_w):
                    rows_in[2 * ci * length + lead + i] = xf[x_row + 2 * i]
                    rows_in[(2 * ci + 1) * length + lead + i] = xf[x_row + 2 * i + 1]
            for c in range(count):
                # The weights of input channel ci: w_at + ci * w_step, parts side by side.
                w_at = (((g * c_in_g * c_out_g + co0 + c) * k_d + kd) * k_h + kh) * 2 * k_w
                w_step = c_out_g * k_d * k_h * 2 * k_w
                for kw in range(k_w):
                    at, src = 2 * c * span + w_taps_at[kw, 0], w_taps_at[kw, 1]
                    j_hi = w_taps_at[kw, 4]
                    for j in range(w_taps_at[kw, 3], j_hi, lanes):
                        rr, ii, ir, ri = (simd.zeros(xf), simd.zeros(xf), simd.zeros(xf),
                                          simd.zeros(xf))
                        for ci in range(c_in_g):
                            x_re = simd.load(rows_in, 2 * ci * length + src + j)
                            x_im = simd.load(rows_in, (2 * ci + 1) * length + src + j)
                            w_re = wf[w_at + ci * w_step + 2 * kw]
                            w_im = wf[w_at + ci * w_step + 2 * kw + 1]
                            rr = simd.fma(x_re, w_re, rr)
                            ii = simd.fma(x_im, w_im, ii)
                            ir = simd.fma(x_re, w_im, ir)
                            ri = simd.fma(x_im, w_re, ri)
                        simd.store(columns, 0, rr)
                        simd.store(columns, lanes, ii)
                        simd.store(columns, 2 * lanes, ir)
                        simd.store(columns, 3 * lanes, ri)
                        for lane in range(min(lanes, j_hi - j)):
                            acc[at + j + lane] += columns[lane] - columns[lanes + lane]
                            acc[at + span + j + lane] += (columns[2 * lanes + lane]
                                                          + columns[3 * lanes + lane])
        for c in range(count):
            first = (((n * c_out + g * c_out_g + co0 + c) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[2 * (first + ow)] = acc[2 * c * span + ow % s_w * pitch + ow // s_w]
                of[2 * (first + ow) + 1] = acc[(2 * c + 1) * span + ow % s_w * pitch
                                               + ow // s_w]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def conv_in_order(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """``conv`` into ``out`` (N, C_out, OD, OH, OW) from ``x`` (N, C_in, D,
    H, W) and ``w`` (C_out, C_in/groups, KD, KH, KW) in the :data:`CONV`
    order, a kernel of its own; output ``o`` reads input ``o*s + k*d - p``
    through tap ``k``. A task sums one output row of each of up to
    :data:`TILES_CHANNELS` output channels of a group, in vectors of the
    row's outputs: from zero, input channel by channel, the taps by ``(kd,
    kh, kw)``, each an explicit FMA (a tap whose input row lies outside
    ``x`` along D or H reads zeros); then the bias. A tap's input row is
    split once for every channel of the task into its W phase planes,
    plane ``r`` holding inputs ``j*s_w + r - p_w`` (zeros outside the row),
    so that tap ``kw`` reads one contiguous stretch: plane ``kw*d_w %
    s_w`` from ``kw*d_w // s_w``."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out, c_in_g, k_d, k_h, k_w = w.shape
    o_d, o_h, o_w = out.shape[2], out.shape[3], out.shape[4]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    c_out_g = c_out // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lanes = simd.lanes(xf)
    zeros = simd.zeros(xf)
    pitch = -(-o_w // lanes) * lanes
    acc = np.empty(TILES_CHANNELS * pitch, dtype=out.dtype)
    planes, inside, w_src = _phase_planes(pitch, k_w, s_w, d_w, p_w, i_w, x.dtype)
    plane_len = planes.size // s_w
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        for j in range(count * pitch):
            acc[j] = 0
        for ci in range(c_in_g):
            x_plane = (n * c_in + g * c_in_g + ci) * i_d * i_h * i_w
            for kd in range(k_d):
                i_dd = od * s_d + kd * d_d - p_d
                for kh in range(k_h):
                    i_hh = oh * s_h + kh * d_h - p_h
                    in_dh = 0 <= i_dd < i_d and 0 <= i_hh < i_h
                    if in_dh:
                        x_row = x_plane + (i_dd * i_h + i_hh) * i_w - p_w
                        for r in range(s_w):
                            for j in range(inside[r, 0], inside[r, 1]):
                                planes[r * plane_len + j] = xf[x_row + j * s_w + r]
                    for c in range(count):
                        w_taps = ((((g * c_out_g + co0 + c) * c_in_g + ci) * k_d + kd) * k_h
                                  + kh) * k_w
                        at = np.uint64(c * pitch)
                        for j in range(np.uint64(0), np.uint64(pitch), np.uint64(lanes)):
                            # The W taps' FMAs in a register (through acc tap by
                            # tap, dcgan_2d's conv took 1.04 s, now 0.46).
                            sums = simd.load(acc, at + j)
                            for kw in range(k_w):
                                inputs = (simd.load(planes, np.uint64(w_src[kw]) + j) if in_dh
                                          else zeros)
                                sums = simd.fma(inputs, wf[w_taps + kw], sums)
                            simd.store(acc, at + j, sums)
        for c in range(count):
            oc = g * c_out_g + co0 + c
            first = (((n * c_out + oc) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[first + ow] = acc[c * pitch + ow] + bias[oc]


@njit(inline="always")
def _phase_planes(pitch, k_w, s_w, d_w, p_w, i_w, dtype):
    """The W phase planes of :func:`conv_in_order` for rows of ``pitch``
    outputs: the zeroed planes (``s_w`` of ``plane_len``), per plane the
    columns that lie inside the input row (the same for every row; the
    others keep their zeros), and where tap ``kw``'s inputs start (in
    plane ``kw*d_w % s_w``, ``kw*d_w // s_w`` on). An output at ``pitch -
    1`` reads up to ``(k_w - 1) * d_w // s_w`` further."""
    plane_len = pitch + (k_w - 1) * d_w // s_w
    inside = np.empty((s_w, 2), dtype=np.int64)
    for r in range(s_w):
        inside[r, 0] = min(max(-((r - p_w) // s_w), 0), plane_len)
        inside[r, 1] = max(min((i_w - 1 + p_w - r) // s_w + 1, plane_len), inside[r, 0])
    w_src = np.empty(k_w, dtype=np.int64)
    for kw in range(k_w):
        w_src[kw] = kw * d_w % s_w * plane_len + kw * d_w // s_w
    return _zeroed(np.empty(s_w * plane_len, dtype=dtype)), inside, w_src


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def conv_in_order_complex(x, w, bias, out, groups, stride, dilation, pad, claimed, cancel):
    """:func:`conv_in_order` of complex data, as :func:`.correlate.conv_planes`
    sums it (the ``conv`` tiles take it as its real twin): ``acc += w * x``
    element by element, from zero, input channel by channel, the taps by
    ``(kd, kh, kw)``, the zero padding included; then the bias. For inputs
    without NaN (the element loops here and there pick between two NaNs
    each their own way). A kernel of its own rather than a branch of
    :func:`conv_in_order` by dtype: an inlined overload there for the W
    taps' loop cost the real kernel, which stands in for every cold real
    ``conv``, 0.2 s more compile (0.71 -> 0.90 s)."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out, c_in_g, k_d, k_h, k_w = w.shape
    o_d, o_h, o_w = out.shape[2], out.shape[3], out.shape[4]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    c_out_g = c_out // groups
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    acc = np.empty(TILES_CHANNELS * o_w, dtype=out.dtype)
    planes, inside, w_src = _phase_planes(o_w, k_w, s_w, d_w, p_w, i_w, x.dtype)
    plane_len = planes.size // s_w
    zero = _zeroed(np.empty(1, dtype=x.dtype))[0]  # a tap's input outside x along D or H
    blocks = -(-c_out_g // TILES_CHANNELS)
    tasks = n_batch * groups * blocks * o_d * o_h
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, co0, count, od, oh = _row_task(task, o_d, o_h, blocks, groups, c_out_g)
        acc[:count * o_w] = 0
        for ci in range(c_in_g):
            x_plane = (n * c_in + g * c_in_g + ci) * i_d * i_h * i_w
            for kd in range(k_d):
                i_dd = od * s_d + kd * d_d - p_d
                for kh in range(k_h):
                    i_hh = oh * s_h + kh * d_h - p_h
                    in_dh = 0 <= i_dd < i_d and 0 <= i_hh < i_h
                    if in_dh:
                        x_row = x_plane + (i_dd * i_h + i_hh) * i_w - p_w
                        for r in range(s_w):
                            for j in range(inside[r, 0], inside[r, 1]):
                                planes[r * plane_len + j] = xf[x_row + j * s_w + r]
                    for c in range(count):
                        w_taps = ((((g * c_out_g + co0 + c) * c_in_g + ci) * k_d + kd) * k_h
                                  + kh) * k_w
                        for j in range(o_w):
                            sums = acc[c * o_w + j]
                            for kw in range(k_w):
                                sums += wf[w_taps + kw] * (planes[w_src[kw] + j] if in_dh
                                                           else zero)
                            acc[c * o_w + j] = sums
        for c in range(count):
            oc = g * c_out_g + co0 + c
            first = (((n * c_out + oc) * o_d + od) * o_h + oh) * o_w
            for ow in range(o_w):
                of[first + ow] = acc[c * o_w + ow] + bias[oc]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def weight_grad_in_order(a_rows, b_rows, plane_of, offsets, n_planes, groups, c_a, c_s, images,
                         length, b_len, tiles, grad, claimed, cancel):
    """``grad`` += one block of ``images`` images' terms of the weight
    gradients in the order of :func:`.weight_grad.weight_tiles` (``tiles``)
    or :func:`.weight_grad.weight_dots`, a kernel of its own; the host
    lays the block out as those kernels do and runs the blocks in order.

    ``b_rows`` (images, C_s, ``n_planes``, ``b_len``) holds each channel's phase
    planes on the output grid of :func:`.correlate.plane_tables`, pair
    (``cs``, tap ``t``) reading plane ``plane_of[t]`` from ``offsets[t]``.
    The dots (``grad`` (groups, Ca/groups, pairs)): ``a_rows`` (images,
    C_a, ``length``) the grid's positions, zero at scratch positions; a
    task is one ``ca`` and one ``cs`` of a group; each pair sums in lanes
    by position (a lane every vector's width), images in order, then adds
    its lanes' tree to ``grad``. The tiles (``grad`` (groups, pairs,
    Ca/groups rounded up to a vector)): ``a_rows`` (images, groups,
    ``length``, that room) the channels of a position side by side; a task
    is a vector of ``ca`` and one ``cs``; each pair's FMAs run over images,
    then positions, from where ``grad`` stands."""
    lanes = simd.lanes(a_rows)
    n_taps = offsets.shape[0]
    c_a_g, c_s_g = c_a // groups, c_s // groups
    pairs = c_s_g * n_taps
    gf = grad.reshape(-1)
    room = grad.shape[2] if tiles else 0
    across = room // lanes if tiles else c_a_g
    tasks = groups * across * c_s_g
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        cs = task % c_s_g
        ca = task // c_s_g % across
        g = task // (c_s_g * across)
        for t in range(n_taps):
            b_first = (((g * c_s_g + cs) * n_planes + plane_of[t]) * b_len + offsets[t])
            b_image = c_s * n_planes * b_len
            if tiles:
                at = (g * pairs + cs * n_taps + t) * room + ca * lanes
                sums = simd.load(gf, at)
                for n in range(images):
                    a_at = np.uint64(((n * groups + g) * length) * room + ca * lanes)
                    b_at = np.uint64(b_first + n * b_image)
                    for p in range(np.uint64(length)):
                        sums = simd.fma(simd.load(a_rows, a_at + p * np.uint64(room)),
                                        b_rows[b_at + p], sums)
                simd.store(gf, at, sums)
                continue
            sums = simd.zeros(a_rows)
            for n in range(images):
                a_at = np.uint64((n * c_a + g * c_a_g + ca) * length)
                b_at = np.uint64(b_first + n * b_image)
                for p in range(np.uint64(0), np.uint64(length), np.uint64(lanes)):
                    sums = simd.fma(simd.load(a_rows, a_at + p), simd.load(b_rows, b_at + p),
                                    sums)
            gf[(g * c_a_g + ca) * pairs + cs * n_taps + t] += simd.sum_lanes(sums)


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _planes_taps(acc, pitch, padded, lead, w, ci, co_g, kd, kh, s_w, d_w, p_w, o_w):
    """:data:`PLANES`: the W taps of one input row (at ``padded[lead]``)."""
    k_w = w.shape[4]
    for kw in range(min(s_w, k_w)):
        phase = (kw * d_w - p_w) % s_w
        if phase >= o_w:
            continue
        at = np.uint64(phase * pitch)
        n_j = np.uint64((o_w - phase + s_w - 1) // s_w)
        for k2 in range(kw, k_w - s_w, 2 * s_w):
            src0 = np.uint64(lead - (k2 * d_w - p_w) // s_w)
            src1 = np.uint64(lead - ((k2 + s_w) * d_w - p_w) // s_w)
            w0, w1 = w[ci, co_g, kd, kh, k2], w[ci, co_g, kd, kh, k2 + s_w]
            for j in range(n_j):
                acc[at + j] += w0 * padded[src0 + j] + w1 * padded[src1 + j]
        if (k_w - 1 - kw) // s_w % 2 == 0:
            last = kw + (k_w - 1 - kw) // s_w * s_w
            src = np.uint64(lead - (last * d_w - p_w) // s_w)
            weight = w[ci, co_g, kd, kh, last]
            for j in range(n_j):
                acc[at + j] += weight * padded[src + j]
