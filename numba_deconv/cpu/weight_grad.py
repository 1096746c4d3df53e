"""The weight gradients' kernel: a correlation summed over images and
positions, in register tiles.

Both weight gradients are ``grad[ca, cs, k] = sum over n, o of a[n, ca, o]
* src[n, cs, o*s + k*d]`` (``src`` padded), for the channels of one group.
As in :mod:`.correlate`, tap ``k`` reads the phase plane ``r(k)`` of
``src`` at grid position ``P(o) + offset(k)``. Laid out on that grid once
per block of images (``a`` with zeros at the scratch positions, ``src`` as
its phase planes), every pair (``ca``, (``cs``, tap)) is a dot product of
two contiguous rows per image: a matrix product whose long dimension is
the sum.

A task owns a block of ``ca`` and a block of pairs (``cs``, tap) of one
group, so no two tasks write one element. Its 4 x 4 tiles keep 16 vectors
of partial sums in registers over every position of every image in the
block, then add their lanes (in a fixed tree) to the gradient; the blocks
of images follow in order, so each element sums in the same order on any
number of threads.

Zero ``a`` at scratch positions multiplies whatever ``src`` holds there:
exact only for finite ``src``, which the caller checks.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH
from . import atomics, simd
from .correlate import _fill_window, _grid_span, _runs_room

#: Rows (``a`` channels) and columns (pairs) of a register tile.
TILE = 4


def _spell_dot_tile(rows, columns):
    """A ``rows`` x ``columns`` tile of dot products, compiled inline::

        grad[g_at + m*g_pitch + j] += sum over n < images, p < length of
            a[a_at + m*a_pitch + n*a_image + p] * b[b_j + n*b_image + p]

    for ``m < rows``, ``j < columns`` (``length`` a multiple of the lanes).
    """
    name = f"_dot{rows}x{columns}"
    acc = [[f"s{m}_{j}" for j in range(columns)] for m in range(rows)]
    starts = ", ".join(f"b{j}" for j in range(columns))
    lines = [f"def {name}(grad, g_at, g_pitch, a, a_at, a_pitch, a_image, b, {starts}, "
             "b_image, images, length):",
             "    lanes = lanes_of(a)",
             "    " + " = ".join(v for row in acc for v in row) + " = zeros(a)",
             "    for n in range(images):",
             "        a_n = np.uint64(a_at + n * a_image)",
             "        b_n = np.uint64(n * b_image)",
             "        for p in range(0, length, lanes):",
             "            q = np.uint64(p)"]
    lines += [f"            x{m} = load(a, a_n + np.uint64({m} * a_pitch) + q)"
              for m in range(rows)]
    lines += [f"            y{j} = load(b, np.uint64(b{j}) + b_n + q)" for j in range(columns)]
    lines += [f"            {acc[m][j]} = fma(x{m}, y{j}, {acc[m][j]})"
              for m in range(rows) for j in range(columns)]
    lines += [f"    grad[g_at + {m} * g_pitch + {j}] += sum_lanes({acc[m][j]})"
              for m in range(rows) for j in range(columns)]
    namespace = {"np": np, "lanes_of": simd.lanes, "zeros": simd.zeros, "load": simd.load,
                 "fma": simd.fma, "sum_lanes": simd.sum_lanes}
    exec("\n".join(lines), namespace)
    return njit(inline="always")(namespace[name])


_dot4x4, _dot4x1, _dot1x4, _dot1x1 = (_spell_dot_tile(r, c)
                                      for r, c in ((4, 4), (4, 1), (1, 4), (1, 1)))


@njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=True)
def weight_dots(a, src, planes, plane_of, offsets, pitch, pad, stride, groups,
                images_per_block, a_block, pair_block, grad, cancel):
    """``grad`` (groups, Ca/groups, Cs/groups * taps), zeroed by the
    caller, += the correlation of ``a`` (N, Ca, OD, OH, OW) with ``src``
    (N, Cs, D, H, W) padded by ``pad`` zeros before each dim, pairs ordered
    (channel, tap), as dot products of
    rows (for few channels of ``a``); the tables from
    :func:`.correlate.plane_tables` for the output grid of ``a``. Images
    go ``images_per_block`` at a time; a task owns ``a_block`` channels of
    ``a`` (a multiple of :data:`TILE`) and ``pair_block`` pairs.
    """
    n_batch, c_a = a.shape[0], a.shape[1]
    c_s = src.shape[1]
    o_d, o_h, o_w = a.shape[2], a.shape[3], a.shape[4]
    lanes = simd.lanes(a.reshape(-1))
    n_taps, n_planes = offsets.shape[0], planes.shape[0]
    u_h, u_w = pitch[1], pitch[2]
    c_a_g, c_s_g = c_a // groups, c_s // groups
    pairs = c_s_g * n_taps
    span = _grid_span(a.shape[2:], pitch)
    a_len = -(-span // lanes) * lanes
    # Plane rows hold every position a vector of a reaches through any tap.
    b_len = a_len + offsets.max()
    a_rows = np.empty(images_per_block * c_a * a_len, dtype=a.dtype)
    b_rows = np.empty(images_per_block * c_s * n_planes * b_len, dtype=a.dtype)
    af = a.reshape(-1)
    a_blocks = -(-c_a_g // a_block)
    pair_blocks = -(-pairs // pair_block)
    for n0 in range(0, n_batch, images_per_block):
        if atomics.cancelled(cancel):
            break
        images = min(images_per_block, n_batch - n0)
        for job in prange(images * (c_a + c_s)):
            n, c = job // (c_a + c_s), job % (c_a + c_s)
            if c < c_a:
                row = a_rows[(n * c_a + c) * a_len:(n * c_a + c + 1) * a_len]
                row[:] = 0
                for line in range(o_d * o_h):
                    at = (line // o_h * u_h + line % o_h) * u_w
                    source = (((n0 + n) * c_a + c) * o_d * o_h + line) * o_w
                    for t in range(np.uint64(o_w)):
                        row[np.uint64(at) + t] = af[np.uint64(source) + t]
            else:
                _fill_planes(b_rows, src, n0 + n, n, c - c_a, planes, b_len, pitch, pad, stride)
        for task in prange(groups * a_blocks * pair_blocks):
            if atomics.cancelled(cancel):
                continue
            pb = task % pair_blocks
            ab = (task // pair_blocks) % a_blocks
            g = task // (pair_blocks * a_blocks)
            ca0, ca1 = ab * a_block, min((ab + 1) * a_block, c_a_g)
            j0, j1 = pb * pair_block, min((pb + 1) * pair_block, pairs)
            b_at = _pair_rows(j0, j1, pairs, g * c_s_g, plane_of, offsets, n_planes, b_len)
            _tiles(grad, (g * c_a_g) * pairs, pairs, a_rows, g * c_a_g * a_len, a_len,
                   c_a * a_len, b_rows, b_at, c_s * n_planes * b_len, images, a_len,
                   ca0, ca1, j0, j1)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _tiles(grad, g_at, pairs, a, a_at, a_pitch, a_image, b, b_at, b_image, images, length,
           ca0, ca1, j0, j1):
    """The tiles of rows ``ca0 .. ca1`` and pairs ``j0 .. j1`` (``b_at``
    their rows from ``j0``): 4 x 4 while they last, then the edges."""
    full_rows = ca0 + (ca1 - ca0) // TILE * TILE
    full_pairs = j0 + (j1 - j0) // TILE * TILE
    gf = grad.reshape(-1)
    for ca in range(ca0, full_rows, TILE):
        at = a_at + ca * a_pitch
        for j in range(j0, full_pairs, TILE):
            k = j - j0
            _dot4x4(gf, g_at + ca * pairs + j, pairs, a, at, a_pitch, a_image, b, b_at[k],
                    b_at[k + 1], b_at[k + 2], b_at[k + 3], b_image, images, length)
        for j in range(full_pairs, j1):
            _dot4x1(gf, g_at + ca * pairs + j, pairs, a, at, a_pitch, a_image, b,
                    b_at[j - j0], b_image, images, length)
    for ca in range(full_rows, ca1):
        at = a_at + ca * a_pitch
        for j in range(j0, full_pairs, TILE):
            k = j - j0
            _dot1x4(gf, g_at + ca * pairs + j, pairs, a, at, a_pitch, a_image, b, b_at[k],
                    b_at[k + 1], b_at[k + 2], b_at[k + 3], b_image, images, length)
        for j in range(full_pairs, j1):
            _dot1x1(gf, g_at + ca * pairs + j, pairs, a, at, a_pitch, a_image, b,
                    b_at[j - j0], b_image, images, length)


@njit(nogil=True, cache=True)
def _pair_rows(j0, j1, pairs, c0, plane_of, offsets, n_planes, b_len):
    """Where pairs ``j0 .. j1`` (channel ``c0 + j // taps``, tap ``j % taps``)
    start in a block's plane rows, ``b_rows`` of :func:`_fill_planes`;
    pairs from ``pairs`` on (padding a tile) repeat the last one. ``TILE``
    entries to spare past ``j1``."""
    n_taps = offsets.shape[0]
    rows = np.empty(j1 - j0 + TILE, dtype=np.int64)
    for j in range(j0, j1):
        cs, t = min(j, pairs - 1) // n_taps, min(j, pairs - 1) % n_taps
        rows[j - j0] = ((c0 + cs) * n_planes + plane_of[t]) * b_len + offsets[t]
    return rows


@njit(nogil=True, cache=True)
def _fill_planes(b_rows, src, n, slot, c, planes, b_len, pitch, pad, stride):
    """The phase planes of channel ``c`` of image ``n`` of ``src`` into
    image slot ``slot`` of ``b_rows`` (slots, Cs, n_planes, b_len)."""
    n_planes = planes.shape[0]
    first = (slot * src.shape[1] + c) * n_planes * b_len
    window = b_rows[first:first + n_planes * b_len]
    window[:] = 0
    runs, built = _runs_room(b_len, pitch[2], n_planes)
    _fill_window(window, src, n, c, 1, planes, 0, b_len, pitch, pad, stride, False, runs, built)


#: Pairs (columns) of a channel-vector tile; its rows are 1-3 vectors of
#: channels of ``a``.
PAIRS = 8


def _spell_channel_tile(vectors):
    """A tile of ``PAIRS`` pairs x ``vectors`` vectors of channels, compiled
    inline::

        grad[g_at + m*g_pitch + v*lanes + l] += sum over n < images, p < length of
            a[a_at + n*a_image + p*a_pitch + v*lanes + l] * b[b_m + n*b_image + p]

    ``a`` holds the channels of a position side by side, so each step loads
    ``vectors`` vectors and ``PAIRS`` scalars for ``vectors * PAIRS``
    multiply-adds, the conv tiles' ratio.
    """
    name = f"_channels{vectors}"
    acc = [[f"s{m}_{v}" for v in range(vectors)] for m in range(PAIRS)]
    starts = ", ".join(f"b{m}" for m in range(PAIRS))
    lines = [f"def {name}(grad, g_at, g_pitch, a, a_at, a_image, a_pitch, b, {starts}, "
             "b_image, images, length):",
             "    lanes = lanes_of(a)"]
    lines += [f"    {acc[m][v]} = load(grad, g_at + {m} * g_pitch + {v} * lanes)"
              for m in range(PAIRS) for v in range(vectors)]
    lines += ["    for n in range(images):",
              "        a_n = np.uint64(a_at + n * a_image)",
              "        b_n = np.uint64(n * b_image)",
              "        for p in range(np.uint64(length)):",
              "            at = a_n + p * np.uint64(a_pitch)"]
    lines += [f"            x{v} = load(a, at + np.uint64({v} * lanes))" for v in range(vectors)]
    for m in range(PAIRS):
        lines.append(f"            s = b[np.uint64(b{m}) + b_n + p]")
        lines += [f"            {acc[m][v]} = fma(x{v}, s, {acc[m][v]})" for v in range(vectors)]
    lines += [f"    store(grad, g_at + {m} * g_pitch + {v} * lanes, {acc[m][v]})"
              for m in range(PAIRS) for v in range(vectors)]
    namespace = {"np": np, "lanes_of": simd.lanes, "load": simd.load, "store": simd.store,
                 "fma": simd.fma}
    exec("\n".join(lines), namespace)
    return njit(inline="always")(namespace[name])


_channels3, _channels2, _channels1 = (_spell_channel_tile(v) for v in (3, 2, 1))


@njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=True)
def weight_tiles(a, src, planes, plane_of, offsets, pitch, pad, stride, groups,
                 images_per_block, pair_block, grad, cancel):
    """As :func:`weight_dots`, with the channels of ``a`` in vectors (for
    at least a vector's worth per group): ``grad`` (groups, pairs rounded
    up to ``PAIRS``, Ca/groups rounded up to a vector), zeroed by the
    caller. The channels of each group go in blocks of 3 vectors (the
    last may be narrower), each laid out position by position, so a tile
    streams its block of ``a`` straight through (zero past the channels
    and at scratch positions). A task owns one group and ``pair_block``
    pairs (a multiple of ``PAIRS``); pairs past the last read its row and
    land past the pairs the caller keeps.
    """
    n_batch, c_a = a.shape[0], a.shape[1]
    c_s = src.shape[1]
    o_d, o_h, o_w = a.shape[2], a.shape[3], a.shape[4]
    lanes = simd.lanes(a.reshape(-1))
    n_taps, n_planes = offsets.shape[0], planes.shape[0]
    u_h, u_w = pitch[1], pitch[2]
    c_a_g, c_s_g = c_a // groups, c_s // groups
    pairs = c_s_g * n_taps
    pairs_room, c_room = grad.shape[1], grad.shape[2]
    span = _grid_span(a.shape[2:], pitch)
    b_len = span + offsets.max()
    widest = 3 * lanes
    block_len = images_per_block * span  # positions of a block of channels
    a_rows = np.zeros(groups * c_room * block_len, dtype=a.dtype)
    b_rows = np.empty(images_per_block * c_s * n_planes * b_len, dtype=a.dtype)
    af = a.reshape(-1)
    pair_blocks = -(-pairs // pair_block)
    lines = o_d * o_h
    for n0 in range(0, n_batch, images_per_block):
        if atomics.cancelled(cancel):
            break
        images = min(images_per_block, n_batch - n0)
        for job in prange(images * (lines + c_s)):
            n, j = job // (lines + c_s), job % (lines + c_s)
            if j < lines:
                # One output line of every channel, into its block's positions.
                p0 = n * span + (j // o_h * u_h + j % o_h) * u_w
                for c in range(c_a):
                    g, cl = c // c_a_g, c % c_a_g
                    c0 = cl // widest * widest
                    width = min(widest, c_room - c0)
                    slot = np.uint64((g * c_room + c0) * block_len + p0 * width + cl - c0)
                    source = np.uint64((((n0 + n) * c_a + c) * lines + j) * o_w)
                    for t in range(np.uint64(o_w)):
                        a_rows[slot + t * np.uint64(width)] = af[source + t]
            else:
                _fill_planes(b_rows, src, n0 + n, n, j - lines, planes, b_len, pitch, pad,
                             stride)
        for task in prange(groups * pair_blocks):
            if atomics.cancelled(cancel):
                continue
            pb = task % pair_blocks
            g = task // pair_blocks
            j0 = pb * pair_block
            j1 = min(j0 + pair_block, pairs_room)
            b_at = _pair_rows(j0, j1, pairs, g * c_s_g, plane_of, offsets, n_planes, b_len)
            gf = grad.reshape(-1)
            b_image = c_s * n_planes * b_len
            # Channels outer: their block of a stays in L2 while every tile
            # of pairs passes it.
            for c0 in range(0, c_room, widest):
                width = min(widest, c_room - c0)
                a_at = (g * c_room + c0) * block_len
                for j in range(j0, j1, PAIRS):
                    k = j - j0
                    g_at = (g * pairs_room + j) * c_room + c0
                    if width == widest:
                        _channels3(gf, g_at, c_room, a_rows, a_at, span * width, width, b_rows,
                                   b_at[k], b_at[k + 1], b_at[k + 2], b_at[k + 3],
                                   b_at[k + 4], b_at[k + 5], b_at[k + 6], b_at[k + 7],
                                   b_image, images, span)
                    elif width == 2 * lanes:
                        _channels2(gf, g_at, c_room, a_rows, a_at, span * width, width, b_rows,
                                   b_at[k], b_at[k + 1], b_at[k + 2], b_at[k + 3],
                                   b_at[k + 4], b_at[k + 5], b_at[k + 6], b_at[k + 7],
                                   b_image, images, span)
                    else:
                        _channels1(gf, g_at, c_room, a_rows, a_at, span * width, width, b_rows,
                                   b_at[k], b_at[k + 1], b_at[k + 2], b_at[k + 3],
                                   b_at[k + 4], b_at[k + 5], b_at[k + 6], b_at[k + 7],
                                   b_image, images, span)
