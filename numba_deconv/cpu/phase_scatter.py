"""The phase tiles' sums to the output: :func:`.tiled.direct_tiled`'s
accumulators (a row per output channel, the W phases of a sweep side by
side) plus bias, written to each layout's places.

Channels first, rows of few outputs per phase or strides the vector
interleave does not take go by a table (:func:`scatter_by_table`);
stretches that hold a vector's worth of phases x channels go in one
interleave (:func:`interleave_rows`). Channels last, the sums are
transposed in vector squares (:func:`scatter_last`), straight into the
output or, where channels end mid vector, through a stage copied out as
one run. Every output is ``acc + bias`` rounded once, whatever the path.
"""

import numpy as np
from numba import njit

from ..config import FASTMATH
from . import simd


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def interleave_rows(acc, a_first, acc_pitch, block, s_w, bias, b_first, count, of, o_first,
                     row_acc, row_out, row_len, n_rows, rows_at, row_bias):
    """:func:`.tiled.direct_tiled`'s sums plus bias to the sweep's ``n_rows``
    output rows (from ``row_acc``, ``row_out``, ``row_len``; a row starts
    at phase 0) where ``count`` channels lie side by side at each position
    and nothing else does (``of`` flat, row ``i`` from ``o_first + count *
    row_out[i]``): a channels-last output of ``count`` channels, or the
    parts of a complex channel (``count`` 2). The sums of channel ``c``
    (``b_first + c`` of ``bias``) from ``acc[a_first + c * acc_pitch:]``,
    phase ``r`` ``block`` further. Every phase and channel of a vector of
    positions (``s_w * count``, at most a vector: ``rows_at`` and
    ``row_bias`` have room for that many) is one stretch of the output,
    interleaved in whole vectors (:func:`.simd.interleave_rows_add`):
    transposed part tiles took 42 % of few_ch_k3s2's call channels last,
    and splitting a complex channel's parts into rows and merging them
    back, one element at a time at stride 3, half of kernel_lt_stride's."""
    lanes = simd.lanes(acc)
    step = s_w * count  # from a position of a phase to its next
    for r in range(s_w):
        for c in range(count):
            rows_at[r * count + c] = a_first + r * block + c * acc_pitch
            row_bias[r * count + c] = bias[b_first + c]
    for i in range(n_rows):
        o0 = o_first + row_out[i] * count
        for j0 in range(0, -(-row_len[i] // s_w), lanes):
            simd.interleave_rows_add(acc, row_acc[i] + j0, rows_at, row_bias, of, o0 + j0 * step,
                                     step, min(lanes * step, (row_len[i] - j0 * s_w) * count))


@njit(inline="always")
def _copy_out(stage, of, dst, count, streaming):
    """``of[dst : dst + count] = stage[:count]``; with ``streaming``, its
    whole cache lines in non-temporal stores."""
    lanes = simd.lanes(of)
    at = 0
    if streaming:
        line = simd.LINE_BYTES // of.itemsize
        lead = np.int64(of.ctypes.data) // of.itemsize % line  # of's start past a line
        at = min(-(lead + dst) % line, count)
        for e in range(at):
            of[dst + e] = stage[e]
        while at + line <= count:
            for v in range(0, line, lanes):
                simd.store_streaming(of, dst + at + v, simd.load(stage, at + v))
            at += line
    while at + lanes <= count:
        simd.store(of, dst + at, simd.load(stage, at))
        at += lanes
    for e in range(at, count):
        of[dst + e] = stage[e]


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def scatter_last(acc, acc_pitch, block, s_w, bias, of, row_acc, row_out, row_len, n_rows,
                  image, c_out, oc0, count, streaming, out_at, stage):
    """:func:`.tiled.direct_tiled`'s sums plus bias to a channels-last output
    ``of`` (flat): the sweep's ``n_rows`` output rows of image ``image``
    (from ``row_acc``, ``row_out``, ``row_len``; a row starts at phase 0),
    channels ``oc0 .. oc0 + count`` side by side at each position, phase
    by phase in transposed tiles of a vector square. What
    :func:`.kernels.interleave` writes channel by channel, ``acc + bias``
    rounded once either way. With ``streaming`` (an output larger than the
    caches: ``config.STREAM_OUTPUT_MIN_BYTES``), tiles whose rows are whole
    aligned lines are stored non-temporally: their store misses stalled
    the transposes' loads from L2. Rows shorter than a vector a phase go
    together: a vector of a phase's sums spans several rows (and the gaps
    between them), each column to its own position (``out_at``: room for
    ``s_w`` times ``acc_pitch`` positions). With a ``stage`` (room for
    ``lanes`` outputs of every phase, all ``c_out`` channels: ``count`` is
    ``c_out``), longer rows are transposed into it first and copied out as
    one run of whole positions, streamed with ``streaming``: channels that
    end mid vector (27, 39, 104) made each transposed store straddle two
    cache lines, and kept every line from streaming."""
    lanes = simd.lanes(acc)
    step = s_w * c_out  # from one output of a phase to its next
    longest = 0
    for i in range(n_rows):
        longest = max(longest, row_len[i])
    if n_rows > 1 and -(-longest // s_w) < lanes:
        # Phase r's sums at acc[r * block + lo : hi], their output
        # positions (times c_out) at out_at[r * acc_pitch + lo : hi], -1
        # in the gaps.
        lo = row_acc[0]
        hi = row_acc[n_rows - 1] + -(-row_len[n_rows - 1] // s_w)
        phases = min(s_w, longest)
        for r in range(phases):
            table = r * acc_pitch
            out_at[table + lo:table + hi] = -1
            for i in range(n_rows):
                for j in range((row_len[i] - r + s_w - 1) // s_w):
                    out_at[table + row_acc[i] + j] = (image + row_out[i] + r + j * s_w) * c_out
        # A vector of sums of every phase in turn, each with all its
        # channels: the outputs they write lie close, and each line is
        # whole before it leaves the cache. (Phase by phase, each block of
        # channels over the whole sweep, r02's 409 channels on rows of 32
        # took 3.5 of 5.0 ms, 2x the channels-first call.)
        for k0 in range(lo, hi, lanes):
            for r in range(phases):
                for c0 in range(0, count, lanes):
                    simd.transpose_tile_scatter_add(
                        acc, c0 * acc_pitch + r * block + k0, acc_pitch, of, oc0 + c0, out_at,
                        r * acc_pitch + k0, bias, oc0 + c0, min(lanes, count - c0),
                        min(lanes, hi - k0))
        return
    c_full = count // lanes * lanes
    # With a stage, every channel of each position (oc0 is 0), short of
    # whole vectors: the transposed stores would straddle cache lines, so
    # they go to the stage, which leaves as one run of the output (streamed
    # with ``streaming``). Straight to the output, streamed only where
    # every store is a whole aligned line of this task.
    staged = stage.size > 0
    stream_tiles = (streaming and not staged and c_full == count and c_out % lanes == 0
                    and oc0 % lanes == 0 and simd.lanes_before_boundary(of) == 0)
    target = stage if staged else of
    for i in range(n_rows):
        phases = min(s_w, row_len[i])
        # Tiles of every phase side by side, so that the outputs they write
        # (lanes * s_w positions) stay close in the cache; the channels past
        # the last whole vector and the outputs past the last whole tile in
        # part tiles (element by element, 4 channels on 128x128 outputs
        # took 4.5 times the channels-first call).
        for j0 in range(0, -(-row_len[i] // s_w), lanes):
            for r in range(phases):
                outputs = min(lanes, (row_len[i] - r + s_w - 1) // s_w - j0)
                if outputs <= 0:
                    continue
                a0 = row_acc[i] + r * block + j0
                o0 = r * c_out if staged else (image + row_out[i] + r) * c_out + oc0 + j0 * step
                for c0 in range(0, count, lanes):
                    if outputs < lanes or c0 == c_full:
                        simd.transpose_tile_part_add(acc, c0 * acc_pitch + a0, acc_pitch, target,
                                                     o0 + c0, step, bias, oc0 + c0,
                                                     min(lanes, count - c0), outputs)
                    elif stream_tiles:
                        simd.transpose_tile_add_streaming(acc, c0 * acc_pitch + a0, acc_pitch,
                                                          of, o0 + c0, step, bias, oc0 + c0)
                    else:
                        simd.transpose_tile_add(acc, c0 * acc_pitch + a0, acc_pitch, target,
                                                o0 + c0, step, bias, oc0 + c0)
            if staged:
                first = j0 * s_w
                _copy_out(stage, of, (image + row_out[i] + first) * c_out,
                          min(lanes * s_w, row_len[i] - first) * c_out, streaming)
    if stream_tiles or staged and streaming:
        simd.store_fence()


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def scatter_by_table(acc, acc_pitch, block, s_w, bias, of, row_acc, row_out, row_len, n_rows,
                      o_first, o_plane, oc0, count, table):
    """:func:`.tiled.direct_tiled`'s sums plus bias to a channels-first output
    ``of`` (flat) where its rows are short or its stride is not 1, 2 or 4:
    the sweep's ``n_rows`` output rows (from ``row_acc``, ``row_out``,
    ``row_len``; a row starts at phase 0) of channels ``oc0 .. oc0 +
    count``, the first at ``o_first``, the next ``o_plane`` on. What
    :func:`.kernels.interleave` writes, ``acc + bias`` rounded once; there,
    a row with fewer outputs than a vector per phase goes element by
    element, phase by phase (a stride-3 row of 13 outputs took 3 loops of
    4-5 steps: the scatter was 62 % of such a call). Strides 1-4 go in
    vectors here, each row's last outputs in masked stores
    (:func:`.simd.store_interleaved_first`). Larger strides go by a table:
    output ``t`` of a row is ``acc[t % s_w * block + t // s_w]`` past the
    row's start in its channel's accumulators, made once per sweep, so
    that one loop per row writes it in order."""
    if s_w <= 4:
        # A vector of each phase at a time, shuffled into s_w vectors of
        # consecutive outputs; a row's last ones in masked stores. (The
        # outputs past a stride-3 row's last whole vectors went element by
        # element, half of a 95-wide row: the scatter took half of a k2 s3
        # call, 3.7 times the channels-last scatter's time.) The phases'
        # loads past a row's last output read the accumulators' scratch.
        lanes = simd.lanes(acc)
        span = s_w * lanes
        for c in range(count):
            b = simd.splat(acc, bias[oc0 + c])
            for i in range(n_rows):
                a = c * acc_pitch + row_acc[i]
                o = o_first + c * o_plane + row_out[i]
                for t in range(0, row_len[i], span):
                    j = a + t // s_w
                    n = min(span, row_len[i] - t)
                    if s_w == 1:
                        simd.store_interleaved_first(of, o + t, (
                            simd.add(simd.load(acc, j), b),), n)
                    elif s_w == 2:
                        simd.store_interleaved_first(of, o + t, (
                            simd.add(simd.load(acc, j), b),
                            simd.add(simd.load(acc, j + block), b)), n)
                    elif s_w == 3:
                        simd.store_interleaved_first(of, o + t, (
                            simd.add(simd.load(acc, j), b),
                            simd.add(simd.load(acc, j + block), b),
                            simd.add(simd.load(acc, j + 2 * block), b)), n)
                    else:
                        simd.store_interleaved_first(of, o + t, (
                            simd.add(simd.load(acc, j), b),
                            simd.add(simd.load(acc, j + block), b),
                            simd.add(simd.load(acc, j + 2 * block), b),
                            simd.add(simd.load(acc, j + 3 * block), b)), n)
        return
    longest = 0
    for i in range(n_rows):
        longest = max(longest, row_len[i])
    for t in range(longest):
        table[t] = t % s_w * block + t // s_w
    for c in range(count):
        value = bias[oc0 + c]
        a_channel = c * acc_pitch
        o_channel = o_first + c * o_plane
        for i in range(n_rows):
            a = np.uint64(a_channel + row_acc[i])
            o = np.uint64(o_channel + row_out[i])
            for t in range(np.uint64(row_len[i])):
                of[o + t] = acc[a + np.uint64(table[t])] + value
