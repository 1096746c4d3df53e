"""The phase tiles' weight table: the weights laid out once per call (or
once per plan) in the order the register tiles read them.

:func:`.tiled.direct_tiled` and :func:`.correlate.conv_tiles` read each
phase's weights as one contiguous stream, a block of ``TILE_ROWS`` output
channels per (input channel, tap) pair (:func:`.tiled.phase_weights`).
:func:`weight_table` makes that table, and counts the weights that are not
finite as it goes: the tiles multiply zero padding, exact only for finite
weights.
"""

import numpy as np
from numba import njit

from .. import config
from . import atomics, simd
from .launch import parallel, serial
from .tiled import TILE_ROWS, phase_pairs, phase_stretch


@njit(inline="always")
def _phase_block_at(table, g, first_pair, ph, blocks, b):
    """Where block ``b`` of phase ``ph`` of group ``g`` starts in the flat
    weight table: :func:`phase_weights`' rows as flat indices, for the fill
    (a view per phase and block made the small tables 1.1-1.6 times as
    slow to fill)."""
    start, pairs = phase_stretch(first_pair, ph, blocks)
    return g * table.shape[1] + start + b * pairs * TILE_ROWS


#: Bytes of weights that :func:`fill_weight_table` turns in L1 at a time.
TURN_BYTES = 16 << 10


@njit(nogil=True, cache=True)
def fill_weight_table(w, table, tap_index, tap_counts, chunk, non_finite, claimed, cancel):
    """``table`` (``(groups, blocks * TILE_ROWS * C_in_g * taps)``) = the
    weights of ``w`` (C_in, C_out_g, kd, kh, kw) in register-tile order, and
    ``non_finite[0]`` += how many of them are not finite: a task kernel
    (:func:`.launch.parallel`) whose tasks are a block of output channels
    and up to ``chunk`` input channels of one group.

    A group's row holds the phases one after another, each as many pairs
    as it has (:func:`phase_weights`): phase ``ph``'s ``(blocks, K *
    TILE_ROWS)`` stretch has at ``[b, k * TILE_ROWS + m]`` the weight of
    output channel ``b * TILE_ROWS + m`` for pair ``k = channel * T + tap``
    (its ``T`` taps are ``tap_index[ph, :T]``, ``T = tap_counts[ph]``), so a
    tile reads its weights in one contiguous stream. (Room for the most
    taps of any phase in every phase took 27 times the weights where a
    dilation equal to the stride put all 216 taps of a 3-D kernel in one
    phase.)

    A task's weights (per input channel, ``TILE_ROWS`` runs of all taps in
    ``w``) are turned tap by tap, in vector-square transposes, into
    ``turned`` (``TURN_BYTES``, in L1); then each phase's stretch of the
    table is written in order, a vector per (channel, tap). Copied weight
    by weight, (channel, block) by (channel, block), the table's writes
    went to a phase's stretch and on to the next, and took a quarter of
    a 0.38 ms call of 31 -> 399 channels (``benchmarks/TUNING.md``).
    Vectors twice as wide as a block (AVX-512's float32) turn squares of
    two blocks' rows, and a task takes both blocks. A last block of
    fewer rows goes weight by weight, zeros past the block's rows (the
    tiles read them). Every element is written, so the table needs no clearing
    first.
    """
    c_out_g = w.shape[1]
    k_h, k_w = w.shape[3], w.shape[4]
    taps = w.shape[2] * k_h * k_w
    groups, n_phases = table.shape[0], tap_counts.shape[0]
    c_in_g = w.shape[0] // groups
    blocks = -(-c_out_g // TILE_ROWS)
    first_pair = phase_pairs(tap_counts, c_in_g)
    wf, tf = w.reshape(-1), table.reshape(-1)
    lanes = simd.lanes(wf)
    vectors = lanes <= TILE_ROWS
    whole_taps = taps // lanes * lanes
    flat_tap = np.empty(tap_index.shape[:2], dtype=np.int64)  # each tap's index in w, once
    for ph in range(n_phases):
        for t in range(tap_counts[ph]):
            flat_tap[ph, t] = ((tap_index[ph, t, 0] * k_h + tap_index[ph, t, 1]) * k_w
                               + tap_index[ph, t, 2])
    per_channel = taps * TILE_ROWS
    ci_block = max(1, min(chunk, c_in_g, TURN_BYTES // (per_channel * w.itemsize)))
    ci_blocks = -(-c_in_g // ci_block)
    # turned[(c * taps + t) * TILE_ROWS + m]: weight of the task's channel c,
    # output channel m of its block, tap t; without vectors as wide as a
    # block, turned[(c * square_taps + t) * lanes + m] (taps in whole squares).
    square_taps = -(-taps // lanes) * lanes
    turned_size = ci_block * (per_channel if vectors else square_taps * lanes)
    turned = simd.aligned(np.empty(turned_size + lanes, dtype=w.dtype), turned_size)
    # Without vectors as wide as a block, a task takes two blocks: the 16
    # rows of a square.
    span = 1 if vectors else 2
    spans = -(-blocks // span)
    tasks = groups * spans * ci_blocks
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        ci0 = task % ci_blocks * ci_block
        b = task // ci_blocks % spans * span
        g = task // (ci_blocks * spans)
        n_ci = min(ci_block, c_in_g - ci0)
        co0 = b * TILE_ROWS
        rows = min(TILE_ROWS, c_out_g - co0)
        count = 0
        if not vectors:
            # Vectors of 16 lanes (float32, AVX-512) on blocks of 8 rows:
            # squares of the 16 output channels of blocks b and b + 1 (or
            # the rows after the last block, read where they lie inside w
            # and not used) by 16 taps, 16 apart in ``turned``. Weight by
            # weight, with a loop per phase and tap, took 1.3 ns a weight
            # (31 -> 399 channels, 3x3 taps: 145 us a fill).
            both = min(span * TILE_ROWS, c_out_g - co0)
            for c in range(n_ci):
                w0 = ((g * c_in_g + ci0 + c) * c_out_g + co0) * taps
                t0 = c * square_taps * lanes
                if w0 + (lanes - 1) * taps + square_taps <= wf.size:
                    for t in range(0, taps, lanes):
                        simd.transpose_tile(wf, w0 + t, taps, turned, t0 + t * lanes, lanes)
                else:  # the last rows of w: no square may read past them
                    for t in range(taps):
                        for m in range(both):
                            turned[t0 + t * lanes + m] = wf[w0 + m * taps + t]
                for k in range(np.uint64(w0), np.uint64(w0 + both * taps)):
                    count += not np.isfinite(wf[k])
            for half in range(min(span, blocks - b)):
                rows = min(TILE_ROWS, c_out_g - co0 - half * TILE_ROWS)
                for ph in range(n_phases):
                    n_taps = tap_counts[ph]
                    at = np.uint64(_phase_block_at(table, g, first_pair, ph, blocks, b + half)
                                   + ci0 * n_taps * TILE_ROWS)
                    for c in range(n_ci):
                        for t in range(n_taps):
                            src = np.uint64((c * square_taps + flat_tap[ph, t]) * lanes
                                            + half * TILE_ROWS)
                            if rows == TILE_ROWS:
                                for m in range(np.uint64(TILE_ROWS)):
                                    tf[at + m] = turned[src + m]
                            else:
                                for m in range(np.uint64(rows)):
                                    tf[at + m] = turned[src + m]
                                for m in range(np.uint64(rows), np.uint64(TILE_ROWS)):
                                    tf[at + m] = 0
                            at += np.uint64(TILE_ROWS)
            atomics.fetch_add(non_finite, count)
            continue
        if rows < TILE_ROWS:
            for ci in range(ci0, ci0 + n_ci):
                w0 = ((g * c_in_g + ci) * c_out_g + co0) * taps
                for ph in range(n_phases):
                    n_taps = tap_counts[ph]
                    at = _phase_block_at(table, g, first_pair, ph, blocks, b) + ci * n_taps * TILE_ROWS
                    for t in range(n_taps):
                        src = np.uint64(w0 + flat_tap[ph, t])
                        dst = np.uint64(at + t * TILE_ROWS)
                        for m in range(rows):
                            value = wf[src + np.uint64(m * taps)]
                            tf[dst + np.uint64(m)] = value
                            count += not np.isfinite(value)
                        for m in range(rows, TILE_ROWS):
                            tf[dst + np.uint64(m)] = 0
            atomics.fetch_add(non_finite, count)
            continue
        for c in range(n_ci):
            w0 = ((g * c_in_g + ci0 + c) * c_out_g + co0) * taps
            t0 = c * per_channel
            for m0 in range(0, TILE_ROWS, lanes):
                for t in range(0, whole_taps, lanes):
                    simd.transpose_tile(wf, w0 + m0 * taps + t, taps, turned,
                                        t0 + t * TILE_ROWS + m0, TILE_ROWS)
                for t in range(whole_taps, taps):
                    for m in range(m0, m0 + lanes):
                        turned[t0 + t * TILE_ROWS + m] = wf[w0 + m * taps + t]
        for k in range(n_ci * per_channel):
            count += not np.isfinite(turned[k])
        for ph in range(n_phases):
            n_taps = tap_counts[ph]
            at = _phase_block_at(table, g, first_pair, ph, blocks, b) + ci0 * n_taps * TILE_ROWS
            for c in range(n_ci):
                for t in range(n_taps):
                    src = c * per_channel + flat_tap[ph, t] * TILE_ROWS
                    for m0 in range(0, TILE_ROWS, lanes):
                        simd.store(tf, at + m0, simd.load(turned, src + m0))
                    at += TILE_ROWS
        atomics.fetch_add(non_finite, count)


def weight_table(w, groups, tap_index, tap_counts):
    """``(table, non_finite)``: the weights ``w`` (C_in, C_out/groups,
    *kernel, rank 3) in the phase tiles' order and how many of them are not
    finite (:func:`fill_weight_table`), on every thread for tables
    of ``WEIGHT_TABLE_PARALLEL_MIN`` weights or more."""
    blocks = -(-w.shape[1] // TILE_ROWS)
    pairs = w.shape[0] // groups * int(tap_counts.sum())  # per group, every phase
    table = np.empty((groups, blocks * TILE_ROWS * pairs), dtype=w.dtype)
    non_finite = np.zeros(1, dtype=np.int64)
    chunk = config.WEIGHT_TABLE_CHUNK
    if table.size >= config.WEIGHT_TABLE_PARALLEL_MIN:
        parallel(fill_weight_table, w, table, tap_index, tap_counts, chunk, non_finite)
    else:
        serial(fill_weight_table, w, table, tap_index, tap_counts, chunk, non_finite)
    return table, int(non_finite[0])
