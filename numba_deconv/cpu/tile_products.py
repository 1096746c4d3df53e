"""The phase tiles' products: register tiles over the (input channel, tap)
pairs of one output phase, for :func:`.tiled.direct_tiled` and
:func:`.correlate.conv_tiles`.

A sweep's positions are cut into vectors (:func:`sweep_segments`), and
:func:`phase_products` runs the tiles (:func:`.register_tiles.spell_tile`) of a
block of :data:`TILE_ROWS` output channels over them, reading the input
window at each pair's offset and the weight table in tile order. Where a
vector's rows read zero padding through some taps (small images under
large kernels), :func:`tap_spans` finds the taps that reach the image and
:func:`phase_products_spans` sums only those: the products left out are
zeros, so the sums keep their bits.
"""

import numpy as np
from numba import njit

from ..config import FASTMATH
from . import register_tiles

#: Output channels per register tile (8 rows x simd.TILE_VECTORS vectors of
#: positions).
TILE_ROWS = 8


# 8 x 3 is the main tile; 8 x 2 covers the vectors left over, 4 x 6 (then
# 4 x 2) a last block of 4 channels, 3 x 6 (then 3 x 2) one of 3, 2 x 8 one
# of 2 channels and 1 x 4 (then 1 x 1) one of 1 channel and the vectors left
# over by 2 x 8 (every variant adds to the compile time). Each loads as few
# vectors per useful multiply-add as its rows allow: few output channels
# share every input vector among few rows.
(_tile8x3, _tile8x2, _tile4x6, _tile4x2, _tile3x6, _tile3x2, _tile2x8, _tile1x4,
 _tile1x1) = (register_tiles.spell_tile(rows, vectors, TILE_ROWS, "table")
              for rows, vectors in ((8, 3), (8, 2), (4, 6), (4, 2), (3, 6), (3, 2), (2, 8),
                                    (1, 4), (1, 1)))
# The main tile once more, summing a stretch of taps of each channel
# (:func:`tap_spans`, :func:`phase_products_spans`).
_tile8x3_taps = register_tiles.spell_tile(8, 3, TILE_ROWS, "table_ranges")


#: Bytes of a block's weights that the tiles run through before the next
#: chunk: a third of L1, beside the input stretches they stream.
K_CHUNK_BYTES = 16 << 10

#: Fewest (input channel, tap) pairs of a phase for its tiles to sum only
#: the taps that reach the image (:func:`tap_spans`): below, working out
#: the spans costs more than it saves (a 50 us call of 11 input channels
#: with 1-4 taps per phase ran 6 % slower with them).
SPANS_MIN_PAIRS = 64


@njit(inline="always")
def _tiles_of_three(n_segments):
    """How many tiles of 3 vectors to take of ``n_segments`` vectors, so
    that tiles of 2 cover the rest (a single vector takes a tile of 2 that
    computes it twice)."""
    if n_segments % 3 == 1:
        return max(n_segments - 4, 0) // 3
    return n_segments // 3


@njit(inline="always")
def _spanned(tap_first, tap_end, p, count, channels, n_taps):
    """The sum of a tile over segments ``p .. p + count`` (the union of
    their spans, :func:`tap_spans`) as the last arguments of a
    ``table_ranges`` tile (:func:`.register_tiles.spell_tile`): ``(channels, n_taps,
    t_first, t_count)``; every tap of every channel as one run of pairs,
    in one loop."""
    first, end = n_taps, 0
    for q in range(p, p + count):
        first = min(first, tap_first[q])
        end = max(end, tap_end[q])
    if first == 0 and end == n_taps:
        return 1, 0, 0, channels * n_taps
    return channels, n_taps, first, max(end - first, 0)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def phase_products(acc, acc_pitch, xw, src, k_total, wt, rows, segments, n_segments):
    """acc (rows of pitch ``acc_pitch``, one per output channel) = the
    products of one phase at the vectors of positions starting at
    ``segments[:n_segments]``, where pair ``k`` reads ``xw[src[k] +
    position]``; ``wt`` is the phase's ``(blocks, K * TILE_ROWS)`` weights
    of the ``rows`` output channels wanted.

    The pairs go in chunks of ``K_CHUNK_BYTES`` of a block's weights, and
    every block of output channels runs a chunk before the next: the
    block's chunk of weights stays in L1 while every tile of positions
    streams its input stretches from L2, the tiles add each chunk's
    products to the last one's (sums in the same order: the same bits as
    one pass; hundreds of input channels ran 8-14 % slower in one), and
    the input rows a chunk reads stay in L2 while every block passes over
    them (block by block, each running every chunk, a window past L2 was
    read from L3 by every block: dcgan_2d's complex twin with its window's
    copies, 1.9 MB, 0.82-0.86x the time in this order).
    A last block of 3 or 4 channels takes 4-row tiles, one of 2 channels
    2-row tiles, one of 1 channel tiles of one row (a 4-row tile would
    compute 2-4 times the rows wanted: one output channel from hundreds of
    input channels ran at a sixth of the speed), and one of 5-7 channels
    4-row tiles for 4 of them and those for the rest (an 8-row tile would
    run 1-3 empty rows), each in a function of its own: inlined here, they
    slow the main loop.
    """
    triples = _tiles_of_three(n_segments)
    last = n_segments - 1
    ragged = rows % TILE_ROWS   # channels of a last block short of 8
    k_chunk = K_CHUNK_BYTES // (TILE_ROWS * wt.itemsize)
    for k0 in range(0, k_total, k_chunk):
        k_count = min(k_chunk, k_total - k0)
        add = k0 > 0
        table = src[k0:]
        w_at = k0 * TILE_ROWS
        for block in range(wt.shape[0]):
            first = block * TILE_ROWS * acc_pitch
            wb = wt[block]
            if ragged and block == wt.shape[0] - 1:
                _ragged_block(acc, first, acc_pitch, add, xw, table, k_count, wb, w_at, ragged,
                              segments, n_segments)
                continue
            for t in range(triples):
                _tile8x3(acc, first, acc_pitch, add, xw, table, segments[3 * t],
                         segments[3 * t + 1], segments[3 * t + 2], wb, w_at, k_count)
            for p in range(3 * triples, n_segments, 2):
                _tile8x2(acc, first, acc_pitch, add, xw, table, segments[p],
                         segments[min(p + 1, last)], wb, w_at, k_count)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def phase_products_spans(acc, acc_pitch, xw, src, channels, n_taps, wt, rows, segments,
                         n_segments, tap_first, tap_end):
    """:func:`phase_products` (pair ``k = c * n_taps + t``: input channel
    ``c < channels``, tap ``t``) where some segments ``p`` read zero
    padding through some taps (:func:`tap_spans`): the tiles of whole
    blocks sum only the taps ``tap_first[p] <= t < tap_end[p]`` of their
    segments, in their order (the products left out are zeros, and would
    change no sum: the same bits). Its chunks of weights are whole input
    channels, each run by every block in turn. A function of its own:
    beside the plain tiles in :func:`phase_products`, these slowed them
    4-9 %."""
    triples = _tiles_of_three(n_segments)
    ragged = rows % TILE_ROWS
    c_chunk = max(K_CHUNK_BYTES // (TILE_ROWS * wt.itemsize * n_taps), 1)
    for c0 in range(0, channels, c_chunk):
        c_count = min(c_chunk, channels - c0)
        k_count = c_count * n_taps
        add = c0 > 0
        table = src[c0 * n_taps:]
        w_at = c0 * n_taps * TILE_ROWS
        for block in range(wt.shape[0]):
            first = block * TILE_ROWS * acc_pitch
            wb = wt[block]
            if ragged and block == wt.shape[0] - 1:
                _ragged_block(acc, first, acc_pitch, add, xw, table, k_count, wb, w_at, ragged,
                              segments, n_segments)
                continue
            for t in range(triples):
                p = 3 * t
                ch, nt, t_first, t_count = _spanned(tap_first, tap_end, p, 3, c_count, n_taps)
                _tile8x3_taps(acc, first, acc_pitch, add, xw, table, segments[p],
                              segments[p + 1], segments[p + 2], wb, w_at, ch, nt, t_first,
                              t_count)
            # The vectors left over in tiles of 3 that compute the last again
            # (a tile of 2 vectors more would add to the compile time).
            for p in range(3 * triples, n_segments, 2):
                count = min(2, n_segments - p)
                ch, nt, t_first, t_count = _spanned(tap_first, tap_end, p, count, c_count,
                                                    n_taps)
                _tile8x3_taps(acc, first, acc_pitch, add, xw, table, segments[p],
                              segments[p + count - 1], segments[p + count - 1], wb, w_at, ch,
                              nt, t_first, t_count)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _ragged_block(acc, first, acc_pitch, add, xw, src, k_total, wb, w_at, rows, segments,
                  n_segments):
    """:func:`phase_products` of a last block of ``rows`` < 8 output
    channels: 1-2 as a thin block, 3-4 as a narrow one, 5-7 as a narrow
    block of 4 and the rest as either."""
    done = 4 if rows > 4 else 0
    if done:
        _narrow_block(acc, first, acc_pitch, add, xw, src, k_total, wb, w_at, 4, segments,
                      n_segments)
    if rows - done <= 2:
        _thin_block(acc, first + done * acc_pitch, acc_pitch, add, xw, src, k_total, wb,
                    w_at + done, rows - done, segments, n_segments)
    else:
        _narrow_block(acc, first + done * acc_pitch, acc_pitch, add, xw, src, k_total, wb,
                      w_at + done, rows - done, segments, n_segments)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _thin_block(acc, first, acc_pitch, add, xw, src, k_total, wb, w_at, rows, segments,
                n_segments):
    """:func:`phase_products` of a block of 1 or 2 output channels: two
    rows together in tiles of 8 vectors, the rest one row at a time (its
    weights are every ``TILE_ROWS``-th of the block's, from ``w_at``)."""
    done = 0
    if rows == 2:
        done = n_segments // 8 * 8
        for p in range(0, done, 8):
            _tile2x8(acc, first, acc_pitch, add, xw, src, segments[p], segments[p + 1],
                     segments[p + 2], segments[p + 3], segments[p + 4], segments[p + 5],
                     segments[p + 6], segments[p + 7], wb, w_at, k_total)
    for m in range(rows):
        at = first + m * acc_pitch
        for p in range(done, n_segments - 3, 4):
            _tile1x4(acc, at, acc_pitch, add, xw, src, segments[p], segments[p + 1],
                     segments[p + 2], segments[p + 3], wb, w_at + m, k_total)
        for p in range(done + (n_segments - done) // 4 * 4, n_segments):
            _tile1x1(acc, at, acc_pitch, add, xw, src, segments[p], wb, w_at + m, k_total)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _narrow_block(acc, first, acc_pitch, add, xw, src, k_total, wb, w_at, rows, segments,
                  n_segments):
    """:func:`phase_products` of a block of 3 or 4 output channels, in
    tiles of as many rows (3 channels in 4-row tiles wasted a quarter of
    the multiply-adds: 3 output channels are every RGB image's last layer)."""
    last = n_segments - 1
    done = n_segments // 6 * 6
    if rows == 3:
        for p in range(0, done, 6):
            _tile3x6(acc, first, acc_pitch, add, xw, src, segments[p], segments[p + 1],
                     segments[p + 2], segments[p + 3], segments[p + 4], segments[p + 5], wb,
                     w_at, k_total)
        for p in range(done, n_segments, 2):
            _tile3x2(acc, first, acc_pitch, add, xw, src, segments[p],
                     segments[min(p + 1, last)], wb, w_at, k_total)
        return
    for p in range(0, done, 6):
        _tile4x6(acc, first, acc_pitch, add, xw, src, segments[p], segments[p + 1],
                 segments[p + 2], segments[p + 3], segments[p + 4], segments[p + 5], wb, w_at,
                 k_total)
    for p in range(done, n_segments, 2):
        _tile4x2(acc, first, acc_pitch, add, xw, src, segments[p],
                 segments[min(p + 1, last)], wb, w_at, k_total)


@njit(nogil=True, cache=True)
def tap_reach(offsets, tap_counts, pitch, shift_max, in_d, in_h):
    """Per phase and tap, the accumulator rows ``(j_d, j_h)`` whose
    outputs it reads an input row for (not a row of zero padding above or
    below the image): ``reach[ph, t] = (d_lo, d_hi, h_lo, h_hi)``, ``d_lo
    <= j_d < d_hi`` and ``h_lo <= j_h < h_hi``; ``reach[ph, -1]``: the
    rows that every tap of the phase reaches. A tap's offset's row part is
    ``d*u_h + h`` with ``h < u_h`` (its column part stays in the row for
    every output), and the input lies at ``shift_max`` in the padded
    rows."""
    u_h, u_w = pitch[1], pitch[2]
    reach = np.empty((tap_counts.shape[0], offsets.shape[1] + 1, 4), dtype=np.int64)
    for ph in range(tap_counts.shape[0]):
        every = reach[ph, -1]
        every[0], every[1], every[2], every[3] = 0, pitch[0], 0, u_h
        for t in range(tap_counts[ph]):
            shift_d, shift_h = divmod(offsets[ph, t] // u_w, u_h)
            tap = reach[ph, t]
            tap[0], tap[1] = shift_max[0] - shift_d, shift_max[0] - shift_d + in_d
            tap[2], tap[3] = shift_max[1] - shift_h, shift_max[1] - shift_h + in_h
            every[0], every[1] = max(every[0], tap[0]), min(every[1], tap[1])
            every[2], every[3] = max(every[2], tap[2]), min(every[3], tap[3])
    return reach


@njit(nogil=True, cache=True, _nrt=False)
def tap_spans(tap_first, tap_end, segments, n_segments, s0, lanes, reach, n_taps, q_d, q_h,
              u_h, u_w):
    """For each vector of positions ``s0 + segments[p]`` (in increasing
    order) of a phase (``reach``: its rows of :func:`tap_reach`; ``q_d x
    q_h`` rows of outputs): the taps ``tap_first[p] <= t < tap_end[p]``
    from the first to the last that read an input row, not zero padding,
    for an output of the vector's rows. On small images under large
    kernels most taps of the top and bottom rows read padding: 5x21
    images under 5x5 taps computed 1.5 times the products that reach an
    output (benchmarks/TUNING.md). Rows are followed from vector to vector
    without a division: a sweep of a one-channel image has only 9 pairs a
    vector to pay for it. Returns False, and leaves the spans alone, where
    every tap reaches every row of the sweep's outputs."""
    if n_segments == 0:
        return False
    every = reach[-1]
    row = (s0 + segments[0]) // u_w
    j_d, j_h = divmod(row, u_h)
    r, r_d, r_h = row, j_d, j_h
    partial = False
    while r * u_w < s0 + segments[n_segments - 1] + lanes and not partial:
        partial = (r_d < q_d and r_h < q_h
                   and not (every[0] <= r_d < every[1] and every[2] <= r_h < every[3]))
        r, r_h = r + 1, r_h + 1
        if r_h == u_h:
            r_d, r_h = r_d + 1, 0
    if not partial:
        return False
    for p in range(n_segments):
        start = s0 + segments[p]
        while (row + 1) * u_w <= start:
            row, j_h = row + 1, j_h + 1
            if j_h == u_h:
                j_d, j_h = j_d + 1, 0
        first, end = n_taps, 0
        r, r_d, r_h = row, j_d, j_h
        while r * u_w < start + lanes and end - first < n_taps:
            if r_d < q_d and r_h < q_h:
                if every[0] <= r_d < every[1] and every[2] <= r_h < every[3]:
                    first, end = 0, n_taps
                else:
                    for t in range(n_taps):
                        if (reach[t, 0] <= r_d < reach[t, 1]
                                and reach[t, 2] <= r_h < reach[t, 3]):
                            first, end = min(first, t), max(end, t + 1)
            r, r_h = r + 1, r_h + 1
            if r_h == u_h:
                r_d, r_h = r_d + 1, 0
        tap_first[p] = first
        tap_end[p] = end
    return True


@njit(nogil=True, cache=True, _nrt=False)
def sweep_segments(segments, s0, length, lanes, phases, pitch):
    """Fill ``segments`` with the starts (from ``s0``) of vectors covering
    the outputs among positions ``s0 .. s0 + length``; return their count.

    Either row by row (scratch columns past a row's outputs cost nothing
    unless they share a vector) or straight through the positions,
    whichever takes fewer vectors: rows shorter than a vector are cheaper
    straight through.
    """
    u_h, u_w = pitch[1], pitch[2]
    q_d, q_h, q_w = phases[0, 3], phases[0, 4], phases[0, 5]
    first_row, last_row = s0 // u_w, (s0 + length - 1) // u_w
    per_row = (last_row - first_row + 1) * -(-q_w // lanes)
    count = 0
    if per_row <= -(-length // lanes):
        for row in range(first_row, last_row + 1):
            if row // u_h >= q_d or row % u_h >= q_h:
                continue
            for q in range(max(row * u_w, s0), min(row * u_w + q_w, s0 + length), lanes):
                segments[count] = q - s0
                count += 1
    else:
        for q in range(0, length, lanes):
            segments[count] = q
            count += 1
    return count
