"""The native ``conv`` kernels: a strided correlation as one stride-1
correlation over the phase planes of its input.

Along one dim, tap ``k`` of a correlation reads input ``o*s + k*d - p`` for
output ``o``. Writing ``k*d = q*s + r`` (``0 <= r < s``), that is
``x_r[o + q]`` of the *phase plane* ``x_r[j] = x[j*s + r - p]`` (zero
outside ``x``: the zero padding). With the planes that some tap reads laid
side by side for every input channel, each pair (input channel, tap) reads
one contiguous stretch of one plane at a fixed offset from the output
position, so the whole strided correlation is a single matrix product over
those pairs: no zero taps, no partial outputs summed, one launch.

Positions are flat over the grid ``O_d x U_h x U_w`` with ``U = O +
q_max`` per dim (the planes' extent); the columns past ``O_w`` and rows
past ``O_h`` are scratch that nobody stores. A task owns one image, group
and stretch of positions (and, for the tiles, a range of blocks of output
channels), copies the planes' window of its stretch (the stretch and the
halo that the furthest tap reaches), then sweeps it:

- :func:`conv_tiles`: real data with enough channel pairs; the register
  tiles of :mod:`.tiled` (8 output channels x 3 vectors of positions).
- :func:`conv_planes` (on the calling thread alone for tiny calls,
  ``conv_planes_serial``): any dtype, few channel pairs (depthwise, single
  channel); one multiply-add loop per pair over an accumulator row.

The zero padding is multiplied like any input, as the definition of
``conv`` says (``0 * inf`` is NaN, as in PyTorch): unlike the transposed
kernels, these need no fallback for weights that are not finite.
"""

import functools

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..config import CONV_SPLIT_MAX_ROW, FASTMATH
from . import atomics, register_tiles, simd
from .kernels import interleave, interleave_parts
from .tile_products import TILE_ROWS, phase_products, sweep_segments
from .tiled import task_bounds


@functools.lru_cache(maxsize=256)
def plane_tables(kernel, stride, dilation, out_spatial):
    """The phase planes of a rank-3 correlation (all tuples of 3).

    Returns ``(pitch, planes, plane_of, offsets)``: ``pitch`` the grid
    ``U`` per dim; ``planes`` int64 ``(n_planes, 3)``, the phase ``r`` of
    each plane some tap reads; and per tap, in ``(kd, kh, kw)`` order, the
    plane it reads (``plane_of``) and its flat offset in the grid
    (``offsets``), both int64 ``(taps,)``. Memoised: the arrays are
    shared, never to be written (left writable: Numba would compile
    read-only arrays as another type).
    """
    per_dim = [[divmod(k * d, s) for k in range(kk)]
               for kk, s, d in zip(kernel, stride, dilation)]
    pitch = tuple(o + max(q for q, _ in dim) for o, dim in zip(out_spatial, per_dim))
    planes, plane_of, offsets = [], [], []
    for q_d, r_d in per_dim[0]:
        for q_h, r_h in per_dim[1]:
            for q_w, r_w in per_dim[2]:
                if (r_d, r_h, r_w) not in planes:
                    planes.append((r_d, r_h, r_w))
                plane_of.append(planes.index((r_d, r_h, r_w)))
                offsets.append((q_d * pitch[1] + q_h) * pitch[2] + q_w)
    return (pitch, np.array(planes, dtype=np.int64), np.array(plane_of, dtype=np.int64),
            np.array(offsets, dtype=np.int64))


def _strided_copy(dst, d, src, s, count, step):
    """``dst[d + t] = src[s + t*step]`` for ``t < count`` (flat arrays,
    unsigned offsets). Jitted code only."""
    raise NotImplementedError("_strided_copy is for jitted code")


# Stride 2, the commonest, in explicit vectors for float32/float64: each
# vector the even lanes of one load of twice its width (LLVM left the
# loop element by element: depthwise_2d's conv copied its input at 0.57
# ns an element, 4.8 of the kernel's 5.4 ms on one thread). The last
# vectors stop where that load would read past ``src``. Strides 1 and 4
# spelled as constants, which LLVM turns into vector loads and shuffles.
@overload(_strided_copy, inline="always")
def _strided_copy_for(dst, d, src, s, count, step):
    def strided_copy(dst, d, src, s, count, step):
        n = np.uint64(count)
        if step == 1:
            for t in range(n):
                dst[d + t] = src[s + t]
        elif step == 2:
            for t in range(_even_vectors(dst, d, src, s, n), n):
                dst[d + t] = src[s + t * np.uint64(2)]
        elif step == 4:
            for t in range(n):
                dst[d + t] = src[s + t * np.uint64(4)]
        else:
            for t in range(n):
                dst[d + t] = src[s + t * np.uint64(step)]
    return strided_copy


def _even_vectors(dst, d, src, s, n):
    """The whole vectors of ``dst[d + t] = src[s + 2*t]`` for ``t < n`` that
    fit; returns how many elements they copied (0 where the dtypes have no
    vectors). Jitted code only."""
    raise NotImplementedError("_even_vectors is for jitted code")


# Two bodies chosen by type, not one body with a branch on a constant:
# inlined, that branch left a variable Numba's IR checks flag (a
# NumbaIRAssumptionWarning on every compile of conv's kernels).
@overload(_even_vectors, inline="always")
def _even_vectors_for(dst, d, src, s, n):
    if dst.dtype in (types.float32, types.float64) and src.dtype == dst.dtype:
        def in_vectors(dst, d, src, s, n):
            lanes = np.uint64(simd.lanes(dst))
            inside = np.uint64(src.size) - s if np.uint64(src.size) > s else np.uint64(0)
            whole = min(n // lanes, inside // (np.uint64(2) * lanes))
            for v in range(whole):
                even, _ = simd.load_ways(src, s + v * np.uint64(2) * lanes, 2)
                simd.store(dst, d + v * lanes, even)
            return whole * lanes
        return in_vectors

    def none(dst, d, src, s, n):
        return np.uint64(0)
    return none


def _split_copy(dst, d_even, d_odd, src, s, count):
    """``dst[d_even + t] = src[s + 2*t]`` and ``dst[d_odd + t] = src[s + 2*t
    + 1]`` for ``t < count`` (flat arrays, unsigned offsets): a stretch
    into two planes of stride 2. Jitted code only."""
    raise NotImplementedError("_split_copy is for jitted code")


@overload(_split_copy, inline="always")
def _split_copy_for(dst, d_even, d_odd, src, s, count):
    if dst.dtype in (types.float32, types.float64) and src.dtype == dst.dtype:
        def in_vectors(dst, d_even, d_odd, src, s, count):
            lanes, n = np.uint64(simd.lanes(dst)), np.uint64(count)
            inside = np.uint64(src.size) - s if np.uint64(src.size) > s else np.uint64(0)
            whole = min(n // lanes, inside // (np.uint64(2) * lanes))
            for v in range(whole):
                even, odd = simd.load_ways(src, s + v * np.uint64(2) * lanes, 2)
                simd.store(dst, d_even + v * lanes, even)
                simd.store(dst, d_odd + v * lanes, odd)
            for t in range(whole * lanes, n):
                dst[d_even + t] = src[s + np.uint64(2) * t]
                dst[d_odd + t] = src[s + np.uint64(2) * t + np.uint64(1)]
        return in_vectors

    def one_by_one(dst, d_even, d_odd, src, s, count):
        for t in range(np.uint64(count)):
            dst[d_even + t] = src[s + np.uint64(2) * t]
            dst[d_odd + t] = src[s + np.uint64(2) * t + np.uint64(1)]
    return one_by_one


@njit(inline="always")
def _first_column(r_w, p_w, s_w):
    """The first column ``j`` of the plane of W phase ``r_w`` that reads an
    input: ``0 <= j*s_w + r_w - p_w``."""
    return max(-((r_w - p_w) // s_w), 0)


@njit(inline="always")
def _end_column(r_w, p_w, s_w, i_w, u_w):
    """Past the last column ``j`` (of ``u_w``) of that plane that reads an
    input: ``j*s_w + r_w - p_w < i_w``."""
    return min((i_w - 1 + p_w - r_w) // s_w + 1, u_w)


@njit(nogil=True, cache=True, _nrt=False)
def _add_plane_run(runs, n_runs, row_src, lo, hi, r_w, s_w, plane, partner, win_len, p0):
    """Adds the run of grid positions ``[lo, hi)`` (if any) of W phase
    ``r_w`` to ``runs``: the source of position ``P`` is ``row_src + P*s_w +
    r_w`` in a channel, its place ``P - p0`` of window plane ``plane`` (and
    the next column's of plane ``partner``, if not -1). Not inlined: an
    inlined helper that takes an array counts a reference up and down at
    every call (``benchmarks/TUNING.md``, ``_nrt=False``)."""
    if hi <= lo:
        return n_runs
    runs[n_runs, 0] = row_src + lo * s_w + r_w
    runs[n_runs, 1] = plane * win_len + lo - p0
    runs[n_runs, 2] = hi - lo
    runs[n_runs, 3] = partner * win_len + lo - p0 if partner >= 0 else -1
    return n_runs + 1


@njit(nogil=True, cache=True)
def _runs_room(win_most, u_w, n_planes):
    """Room for :func:`_fill_window`'s runs of a window of at most
    ``win_most`` grid positions (rows ``u_w`` long), and the key of what
    it holds (none yet) with room for each plane's partner."""
    return (np.empty(((win_most // u_w + 2) * n_planes * 3, 4), dtype=np.int64),
            np.full(3 + n_planes, -1, dtype=np.int64))


@njit(nogil=True, cache=True)
def _fill_window(xw, x, n, c0, c_count, planes, p0, win_len, pitch, pad, stride, parts, runs,
                 built):
    """``xw[(ci*n_planes + plane)*win_len + P - p0]`` = that plane of input
    channel ``c0 + ci`` of image ``n`` at grid position ``P``, for ``p0 <= P
    < p0 + win_len``; positions outside ``x`` keep the zeros ``xw`` starts
    with. With ``parts``, ``x`` is a complex array's real view, its channel
    ``c`` the twin's channels ``2c`` and ``2c + 1`` (:data:`.tiled.COMPLEX_PARTS`).
    ``runs`` and ``built`` (:func:`_runs_room`, a thread's own) keep the
    runs to copy of the last window: the same for every image and group
    (worked out for each of depthwise_2d's conv tasks, 16 % of the call)."""
    c_in, i_d, i_h, i_w = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    n_planes = planes.shape[0]
    xf = x.reshape(-1)
    if built[0] != p0 or built[1] != win_len:
        built[0], built[1] = p0, win_len
        built[2] = _window_runs(runs, built[3:], planes, p0, win_len, pitch, pad, stride,
                                (i_d, i_h, i_w), parts, CONV_SPLIT_MAX_ROW)
    _copy_runs(xw, xf, runs, built[2], n * c_in + c0, c_count, n_planes * win_len,
               i_d * i_h * i_w, stride[2], parts)


@njit(nogil=True, cache=True, _nrt=False)
def _window_runs(runs, partner, planes, p0, win_len, pitch, pad, stride, in_shape, parts,
                 split_max_row):
    """The runs of :func:`_fill_window`'s window into ``runs`` (``partner``
    room for a plane each); returns how many."""
    i_d, i_h, i_w = in_shape
    n_planes = planes.shape[0]
    u_h, u_w = pitch[1], pitch[2]
    s_d, s_h, s_w = stride
    # Stride 2 along W, each plane of even columns with its plane of odd
    # ones (the same D and H phases, if some tap reads it): both are one
    # load of the input row, split by lane.
    partner[:] = -1
    if s_w == 2 and not parts and u_w <= split_max_row:
        for pl in range(n_planes):
            for other in range(n_planes):
                if (planes[pl, 2] == 0 and planes[other, 2] == 1
                        and planes[pl, 0] == planes[other, 0]
                        and planes[pl, 1] == planes[other, 1]):
                    partner[pl], partner[other] = other, n_planes  # (n_planes: taken)
    # The runs to copy, grid row by grid row and plane by plane, as
    # (source in a channel, window position, length, the partner plane's
    # window position or -1): then channel by channel, each channel's
    # input is read in order, the planes of one input row one after
    # another (plane by plane over every row, a depthwise conv read its
    # input at 3.5 GB/s on one thread).
    first_row, last_row = p0 // u_w, (p0 + win_len - 1) // u_w
    n_runs = 0
    grid_d, grid_h = first_row // u_h, first_row % u_h
    for row in range(first_row, last_row + 1):
        start, end = max(row * u_w, p0), min((row + 1) * u_w, p0 + win_len)
        for pl in range(n_planes):
            if partner[pl] == n_planes:
                continue  # (copied with its even plane)
            i_dd = grid_d * s_d + planes[pl, 0] - pad[0]
            i_hh = grid_h * s_h + planes[pl, 1] - pad[1]
            if i_dd < 0 or i_dd >= i_d or i_hh < 0 or i_hh >= i_h:
                continue
            # The input row, and the source of grid position P (W phase
            # r_w): row_src + P*s_w + r_w.
            row_start = (i_dd * i_h + i_hh) * i_w
            row_src = row_start - row * u_w * s_w - pad[2]
            lo = max(row * u_w + _first_column(planes[pl, 2], pad[2], s_w), start)
            hi = min(row * u_w + _end_column(planes[pl, 2], pad[2], s_w, i_w, u_w), end)
            other = partner[pl]
            if other < 0:
                n_runs = _add_plane_run(runs, n_runs, row_src, lo, hi, planes[pl, 2], s_w, pl,
                                        -1, win_len, p0)
                continue
            # The columns both planes have go split from one load of
            # input columns 2k, 2k + 1 (k counted from the row's first
            # grid position): the plane whose columns are even takes lane
            # 0 (its position k - shift0), the other lane 1 (k - shift1);
            # the rest (at the row's ends) each to its own plane.
            lo_other = max(row * u_w + _first_column(planes[other, 2], pad[2], s_w), start)
            hi_other = min(row * u_w + _end_column(planes[other, 2], pad[2], s_w, i_w, u_w), end)
            lane0, lane1 = (pl, other) if (planes[pl, 2] - pad[2]) % 2 == 0 else (other, pl)
            lo0, hi0 = (lo, hi) if lane0 == pl else (lo_other, hi_other)
            lo1, hi1 = (lo_other, hi_other) if lane0 == pl else (lo, hi)
            shift0 = (planes[lane0, 2] - pad[2]) // 2  # column 2 * (j + shift0)
            shift1 = (planes[lane1, 2] - pad[2] - 1) // 2  # column 2 * (j + shift1) + 1
            k_lo = max(lo0 + shift0, lo1 + shift1)
            k_hi = max(min(hi0 + shift0, hi1 + shift1), k_lo)
            if k_hi > k_lo:
                runs[n_runs, 0] = row_start + 2 * (k_lo - row * u_w)
                runs[n_runs, 1] = lane0 * win_len + k_lo - shift0 - p0
                runs[n_runs, 2] = k_hi - k_lo
                runs[n_runs, 3] = lane1 * win_len + k_lo - shift1 - p0
                n_runs += 1
            for plane, p_lo, p_hi, shift in ((lane0, lo0, hi0, shift0),
                                            (lane1, lo1, hi1, shift1)):
                n_runs = _add_plane_run(runs, n_runs, row_src, p_lo, min(p_hi, k_lo - shift),
                                        planes[plane, 2], 2, plane, -1, win_len, p0)
                n_runs = _add_plane_run(runs, n_runs, row_src, max(p_lo, k_hi - shift), p_hi,
                                        planes[plane, 2], 2, plane, -1, win_len, p0)
        grid_h += 1
        if grid_h == u_h:
            grid_d, grid_h = grid_d + 1, 0
    return n_runs


@njit(nogil=True, cache=True, _nrt=False)
def _copy_runs(xw, xf, runs, n_runs, c_first, c_count, channel_pitch, plane_size, s_w, parts):
    """:func:`_fill_window`'s runs for its ``c_count`` channels (from the
    flat ``c_first`` of ``x``), a window of ``channel_pitch`` each.
    Without reference counts: the copies are inlined, and each counted
    its arrays up and down for every run."""
    for ci in range(c_count):
        for r in range(n_runs):
            dst = np.uint64(ci * channel_pitch + runs[r, 1])
            if runs[r, 3] >= 0:
                _split_copy(xw, dst, np.uint64(ci * channel_pitch + runs[r, 3]), xf,
                            np.uint64((c_first + ci) * plane_size + runs[r, 0]), runs[r, 2])
                continue
            if parts:  # part (c_first + ci) % 2 of complex channel (c_first + ci) // 2
                at = (c_first + ci) // 2 * plane_size + runs[r, 0]
                _strided_copy(xw, dst, xf, np.uint64(2 * at + (c_first + ci) % 2), runs[r, 2],
                              2 * s_w)
                continue
            src = np.uint64((c_first + ci) * plane_size + runs[r, 0])
            _strided_copy(xw, dst, xf, src, runs[r, 2], s_w)


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _store_sweep(acc, acc_pitch, co0, co1, oc0, n, bias, out, s0, length, pitch, parts):
    """Output channels ``oc0 + co0 .. oc0 + co1`` of image ``n`` at grid
    positions ``s0 .. s0 + length``, from their accumulator rows
    (``acc[(co - co0)*acc_pitch + P - s0]``), plus bias; scratch positions
    are skipped. With ``parts``, ``out`` is a complex array's real view and
    each pair of rows one complex channel's parts, merged into it."""
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    u_h, u_w = pitch[1], pitch[2]
    of = out.reshape(-1)
    for row in range(s0 // u_w, (s0 + length - 1) // u_w + 1):
        od, oh = row // u_h, row % u_h
        if od >= o_d or oh >= o_h:
            continue
        ow_lo = max(s0 - row * u_w, 0)
        ow_hi = min(s0 + length - row * u_w, o_w)
        if ow_hi <= ow_lo:
            continue
        if parts:  # the sums plus bias where they are, then both parts at once
            for co in range(co0, co1):
                at = (co - co0) * acc_pitch + row * u_w + ow_lo - s0
                for t in range(at, at + ow_hi - ow_lo):
                    acc[t] = acc[t] + bias[oc0 + co]
            for co in range(co0, co1, 2):
                oc = oc0 + co
                interleave_parts(acc, (co - co0) * acc_pitch + row * u_w + ow_lo - s0,
                                 acc_pitch, of,
                                 2 * ((((n * c_out + oc) // 2 * o_d + od) * o_h + oh) * o_w
                                      + ow_lo), ow_hi - ow_lo)
            continue
        for co in range(co0, co1):
            oc = oc0 + co
            interleave(acc, (co - co0) * acc_pitch + row * u_w + ow_lo - s0, 0, 1, bias[oc],
                       of, (((n * c_out + oc) * o_d + od) * o_h + oh) * o_w + ow_lo,
                       ow_hi - ow_lo)


def grid_span(out_spatial, pitch):
    """Grid positions up to the last output of ``out_spatial`` (rank 3) on
    the grid of ``pitch``: the rest are never computed. Plain Python, for
    the host; the kernels compile it inline."""
    return ((out_spatial[0] - 1) * pitch[1] + out_spatial[1] - 1) * pitch[2] + out_spatial[2]


_grid_span = njit(inline="always")(grid_span)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def conv_tiles(x, weights, offsets, planes, plane_of, bias, out, pitch, pad, stride,
               chunks_per_image, block_parts, sub, parts, claimed, cancel):
    """Correlation by phase planes and register tiles.

    x (N, C_in, D, H, W), out (N, C_out, OD, OH, OW), bias (C_out,), all
    C-contiguous; ``weights`` from :func:`.weight_table.fill_weight_table` with
    one phase holding every tap (in ``(kd, kh, kw)`` order) of the weights
    as a transposed convolution takes them (per group, input and output
    channels swapped); ``offsets``, ``planes``, ``plane_of``, ``pitch``
    from :func:`plane_tables`. A task owns one stretch of positions (of
    ``chunks_per_image``) and one range of blocks of output channels (of
    ``block_parts``) of one image and group; it sweeps ``sub`` positions at
    a time. With ``parts``, x and out are complex arrays' real views run as
    their real twin (:data:`.tiled.COMPLEX_PARTS`): the window copy splits
    each complex channel's parts and the store merges them, the same sums.
    """
    n_batch, c_in = x.shape[0], x.shape[1]
    groups = weights.shape[0]
    lanes = simd.lanes(x.reshape(-1))
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    c_in_g, c_out_g = c_in // groups, c_out // groups
    blocks = -(-c_out_g // TILE_ROWS)
    n_taps, n_planes = offsets.shape[0], planes.shape[0]
    u_w = pitch[2]
    span = _grid_span(out.shape[2:], pitch)
    halo = offsets.max()
    # The output grid as the one phase sweep_segments expects.
    grid = np.array([[0, 0, 0, o_d, o_h, o_w]], dtype=np.int64)
    # Stretches of whole vectors keep vector boundaries on vector boundaries.
    chunk = -(-span // (chunks_per_image * lanes)) * lanes
    tasks = n_batch * groups * chunks_per_image * block_parts
    runs, built = _runs_room(simd.window_pitch(chunk + halo, lanes, x.itemsize), pitch[2],
                             n_planes)
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, p0, p1, b0, b1, co0, co1 = task_bounds(task, span, chunk, blocks, block_parts,
                                                      chunks_per_image, groups, c_out_g,
                                                      n_batch, False, 1)
        if p1 <= p0 or co1 <= co0:
            continue
        # Room for the last vector of positions to read past the window.
        win_len = simd.window_pitch(p1 - p0 + halo, lanes, x.itemsize)
        size = c_in_g * n_planes * win_len
        xw = simd.aligned(np.zeros(size + 2 * lanes, dtype=x.dtype), size + lanes)
        _fill_window(xw, x, n, g * c_in_g, c_in_g, planes, p0, win_len, pitch, pad, stride,
                     parts, runs, built)
        acc_pitch = sub + lanes
        block = (b1 - b0) * TILE_ROWS * acc_pitch
        acc = simd.aligned(np.empty(block + lanes, dtype=out.dtype), block)
        src = np.empty(c_in_g * n_taps, dtype=np.int64)
        segments = np.empty(sub // lanes + sub // u_w + 2, dtype=np.int64)
        for s0 in range(p0, p1, sub):
            length = min(sub, p1 - s0)
            n_segments = sweep_segments(segments, s0, length, lanes, grid, pitch)
            for ci in range(c_in_g):
                for t in range(n_taps):
                    src[ci * n_taps + t] = ((ci * n_planes + plane_of[t]) * win_len
                                            + offsets[t] + s0 - p0)
            phase_products(acc, acc_pitch, xw, src, c_in_g * n_taps,
                           weights[g].reshape((blocks, c_in_g * n_taps * TILE_ROWS))[b0:b1],
                           co1 - co0, segments, n_segments)
            _store_sweep(acc, acc_pitch, co0, co1, g * c_out_g, n, bias, out, s0, length,
                         pitch, parts)


#: Room past :func:`conv_planes`' window and accumulator rows for the last
#: vector of positions to read past them.
_PLANES_ROOM = 64


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def conv_planes(x, w, offsets, planes, plane_of, bias, out, pitch, pad, stride,
                chunks_per_image, sub, claimed, cancel):
    """Correlation by phase planes, one multiply-add loop per pair.

    x (N, C_in, D, H, W), w (C_out, C_in/groups, KD, KH, KW), out (N,
    C_out, OD, OH, OW), bias (C_out,), all C-contiguous; the tables from
    :func:`plane_tables`. A task owns one stretch of positions (of
    ``chunks_per_image``) of one image and group, all its output channels;
    each channel sums its pairs into an accumulator row of ``sub``
    positions.
    """
    tasks = x.shape[0] * (x.shape[1] // w.shape[1]) * chunks_per_image
    # The thread's scratch, for its largest task: made once, not per task
    # (each array a task made counted references up and down, a tenth of
    # depthwise_2d's conv).
    win_most = -(-_grid_span(out.shape[2:], pitch) // chunks_per_image) + offsets.max()
    runs, built = _runs_room(win_most, pitch[2], planes.shape[0])
    xw_room = np.empty(w.shape[1] * planes.shape[0] * win_most + _PLANES_ROOM, dtype=x.dtype)
    acc = np.empty(sub + _PLANES_ROOM, dtype=out.dtype)
    src = np.empty(w.shape[1] * offsets.shape[0], dtype=np.int64)
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        _planes_task(x, w, offsets, planes, plane_of, bias, out, pitch, pad, stride,
                     chunks_per_image, sub, task, runs, built, xw_room, acc, src)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _planes_task(x, w, offsets, planes, plane_of, bias, out, pitch, pad, stride,
                 chunks_per_image, sub, task, runs, built, xw_room, acc, src):
    """Task ``task`` of :func:`conv_planes`, in the thread's scratch:
    ``runs`` and ``built`` for :func:`_fill_window`, room for its window,
    ``acc`` and ``src``."""
    c_in = x.shape[1]
    c_out, c_in_g = out.shape[1], w.shape[1]
    groups = c_in // c_in_g
    c_out_g = c_out // groups
    n_taps, n_planes = offsets.shape[0], planes.shape[0]
    span = _grid_span(out.shape[2:], pitch)
    halo = offsets.max()
    chunk = -(-span // chunks_per_image)
    c = task % chunks_per_image
    g = (task // chunks_per_image) % groups
    n = task // (chunks_per_image * groups)
    p0 = c * chunk
    p1 = min(p0 + chunk, span)
    if p1 <= p0:
        return
    win_len = p1 - p0 + halo
    xw = xw_room[:c_in_g * n_planes * win_len + _PLANES_ROOM]
    xw[:] = 0
    _fill_window(xw, x, n, g * c_in_g, c_in_g, planes, p0, win_len, pitch, pad, stride,
                 False, runs, built)
    wf = w.reshape(-1)
    for s0 in range(p0, p1, sub):
        length = min(sub, p1 - s0)
        for ci in range(c_in_g):
            for t in range(n_taps):
                src[ci * n_taps + t] = ((ci * n_planes + plane_of[t]) * win_len
                                        + offsets[t] + s0 - p0)
        for co in range(c_out_g):
            _pair_sums(acc, xw, src, wf, (g * c_out_g + co) * c_in_g * n_taps,
                       c_in_g * n_taps, length)
            _store_sweep(acc, sub, co, co + 1, g * c_out_g, n, bias, out, s0, length, pitch,
                         False)


def _pair_sums(acc, xw, src, wf, w0, k_total, length):
    """``acc[i] = sum over k < k_total of wf[w0 + k] * xw[src[k] + i]`` for
    ``i < length`` (real dtypes: up to a vector past it), in order of
    ``k``. Jitted code only."""
    raise NotImplementedError("_pair_sums is for jitted code")


# One output channel's register tiles: 4 vectors while they last, then 1.
_tile1x4, _tile1x1 = (register_tiles.spell_tile(1, vectors, 1, "table") for vectors in (4, 1))


@overload(_pair_sums)
def _pair_sums_for(acc, xw, src, wf, w0, k_total, length):
    if acc.dtype in (types.float32, types.float64):
        def in_registers(acc, xw, src, wf, w0, k_total, length):
            lanes = simd.lanes(acc)
            n_vectors = -(-length // lanes)
            for v in range(0, n_vectors - 3, 4):
                q = v * lanes
                _tile1x4(acc, 0, 0, False, xw, src, q, q + lanes, q + 2 * lanes,
                         q + 3 * lanes, wf, w0, k_total)
            for v in range(n_vectors // 4 * 4, n_vectors):
                _tile1x1(acc, 0, 0, False, xw, src, v * lanes, wf, w0, k_total)
        return in_registers

    def by_element(acc, xw, src, wf, w0, k_total, length):
        acc[:length] = 0
        for k in range(k_total):
            weight = wf[w0 + k]
            at = np.uint64(src[k])
            # Unsigned indices: no wraparound test, so the loop vectorises.
            for i in range(np.uint64(length)):
                acc[i] += weight * xw[at + i]
    return by_element
