"""The tiled strategy: phase planes and register tiles, no BLAS, no columns.

Output ``o = q*s + r`` (per dim) receives tap ``k`` from input
``i = q - delta`` where ``k*d - p = delta*s + r``. So each output *phase*
``r = (rd, rh, rw)`` is a dense stride-1 correlation of the input with that
phase's taps: a small matrix product over the pairs (input channel, tap).

The input of one image and group is laid out zero-padded as ``xp`` with
dims ``U = Q + (delta_max - delta_min)`` (``Q``: the longest phase), and
every phase accumulator uses the same pitches. Then in flat indices the
accumulator position ``P`` of every phase reads ``xp[P + offset(tap)]``: one
contiguous stretch per (input channel, tap), however many dims there are.
The few positions per row past ``Q`` are scratch that nobody reads back.

The products run as register tiles (:func:`.register_tiles.spell_tile`): 8 output
channels x 3 vectors of positions, 24 accumulators that stay in registers
for the whole sum over the pairs; each step loads 3 input vectors and 8
weights for 24 vector multiply-adds (with AVX2's 16 registers, two passes
of 4 channels), and the sums are stored once at the
end, so no columns need folding (col2im) and the thin per-image products
run faster than through BLAS (``benchmarks/TUNING.md``). The vectors of a
tile cover the outputs row by row, so scratch columns cost nothing unless
a row is shorter than a vector. The phases of a row are then interleaved
into the output (:func:`.kernels.interleave_real`) from aligned accumulators.

Zero padding adds ``0 * w``, which is 0 only for finite weights: the
weight table counts the weights that are not finite as it is built, and
the driver then runs the row kernel instead.
"""

import numpy as np
from numba import njit

from .. import _phases
from ..config import CHANNELS_LAST_STAGE_MAX_BYTES, FASTMATH
from . import atomics, simd
from .kernels import interleave_parts_real, interleave_real
from .phase_scatter import interleave_rows, scatter_by_table, scatter_last
from .tile_products import (SPANS_MIN_PAIRS, TILE_ROWS, phase_products, phase_products_spans,
                            sweep_segments, tap_reach, tap_spans)
from .transpose import channels_to_rows, split_parts

#: How :func:`direct_tiled`'s ``x`` and ``out`` lie in memory (its
#: ``layout``): channels first, (N, C, *S); channels last, (N, *S, C); or
#: complex channels first as the real twin that the kernel computes
#: (``numba_deconv._dispatch.real_twin``): twin channel ``2c + p`` is part
#: ``p`` (real, imaginary) of complex channel ``c``, and ``x`` and ``out``
#: are the complex arrays' real views, each value's parts side by side.
CHANNELS_FIRST, CHANNELS_LAST, COMPLEX_PARTS = 0, 1, 2


def phase_tables(kernel, stride, dilation, pad, out_spatial, lanes=1, copies_max=0):
    """Geometry of the phases of a rank-3 problem (all tuples of 3), for
    vectors of ``lanes`` elements and windows of at most ``copies_max``
    copies.

    Returns ``(pitch, shift_max, phases, taps, copy_shift)``:

    - ``pitch``: ``U`` per dim, the padded input's and accumulators' dims;
    - ``shift_max``: ``delta_max`` per dim (the input lies at
      ``xp[delta_max + i]``);
    - ``phases``: int64 ``(n_phases, 6)``: ``r`` and ``Q_r`` (outputs in the
      phase) per dim;
    - ``taps``: per phase, a list of ``(kd, kh, kw, offset, copy)``: the
      tap reads copy ``copy`` of the window at ``offset``;
    - ``copy_shift``: int64, per copy of the window, the columns of ``xp``
      it is shifted by along W (``xp[..., j + copy_shift[c]]`` at column
      ``j`` of copy ``c``).

    One copy, unshifted, is the window itself, and a tap's offset takes
    its shift along W too. Where the taps shift W by at most
    ``copies_max`` distinct amounts, and the output rows fill whole
    vectors no less where ``U`` along W is cut to them (the rows went
    vector by vector anyway), each amount gets its copy instead and ``U``
    along W is the rows' whole vectors: then every row of sums starts on
    a vector boundary, and every tap loads its inputs from one (loads
    across two cache lines ran the register tiles at 0.6-0.75 times the
    speed of aligned ones, ``benchmarks/TUNING.md``).
    """
    phase_shift = [[_phases.tap_phase(k, s, d, p) for k in range(kk)]
                   for kk, s, d, p in zip(kernel, stride, dilation, pad)]
    residues = [[r for r, _ in dim] for dim in phase_shift]
    shifts = [[q for _, q in dim] for dim in phase_shift]
    q_max = [-(-o // s) for o, s in zip(out_spatial, stride)]
    shift_max = tuple(max(v) for v in shifts)
    pitch = [q + max(v) - min(v) for q, v in zip(q_max, shifts)]
    w_shifts = sorted({shift_max[2] - q for q in shifts[2]})
    row_vectors = -(-q_max[2] // lanes) * lanes
    copies = len(w_shifts) <= copies_max and row_vectors <= pitch[2]
    if copies:
        pitch[2] = row_vectors
    pitch = tuple(pitch)
    phases, taps = [], []
    for rd in range(stride[0]):
        for rh in range(stride[1]):
            for rw in range(stride[2]):
                r = (rd, rh, rw)
                counts = [-(-(o - ri) // s) if o > ri else 0
                          for o, ri, s in zip(out_spatial, r, stride)]
                phases.append(r + tuple(counts))
                taps.append([
                    (kd, kh, kw,
                     ((shift_max[0] - shifts[0][kd]) * pitch[1]
                      + shift_max[1] - shifts[1][kh]) * pitch[2]
                     + (0 if copies else shift_max[2] - shifts[2][kw]),
                     w_shifts.index(shift_max[2] - shifts[2][kw]) if copies else 0)
                    for kd in range(kernel[0]) if residues[0][kd] == rd
                    for kh in range(kernel[1]) if residues[1][kh] == rh
                    for kw in range(kernel[2]) if residues[2][kw] == rw])
    copy_shift = np.array(w_shifts if copies else [0], dtype=np.int64)
    return pitch, shift_max, np.array(phases, dtype=np.int64), taps, copy_shift


@njit(cache=True)
def phase_span(phases, pitch):
    """Accumulator positions up to the last output of the longest phase
    (phase 0): rows past it, and scratch columns past it in its last row,
    are never computed."""
    return ((phases[0, 3] - 1) * pitch[1] + phases[0, 4] - 1) * pitch[2] + phases[0, 5]


@njit(inline="always")
def task_bounds(task, span, chunk, blocks, block_parts, chunks_per_image, groups, c_out_g,
                n_batch, groups_last, unit):
    """Task ``task`` of a tiled kernel (:func:`direct_tiled`,
    :func:`.correlate.conv_tiles`): its image ``n`` and group ``g``, its
    stretch of positions ``p0 .. p1`` (of ``chunk`` each, up to ``span``)
    and its blocks ``b0 .. b1`` of output channels ``co0 .. co1``, the
    blocks in ``block_parts`` ranges of whole ``unit`` blocks; ``p1 <= p0``
    or ``co1 <= co0``: no work. The tasks of an image's groups follow one
    another, or with ``groups_last`` those of a group's images (channels
    last, the groups of an image write slivers of the same cache lines:
    two threads on two of them at once took them from each other all
    along; for the same reason a channels-last range of channels is whole
    cache lines, ``unit`` blocks)."""
    part = task % block_parts
    c = (task // block_parts) % chunks_per_image
    if groups_last:
        n = (task // (block_parts * chunks_per_image)) % n_batch
        g = task // (block_parts * chunks_per_image * n_batch)
    else:
        g = (task // (block_parts * chunks_per_image)) % groups
        n = task // (block_parts * chunks_per_image * groups)
    p0 = c * chunk
    units = -(-blocks // unit)
    b0 = min(units * part // block_parts * unit, blocks)
    b1 = min(units * (part + 1) // block_parts * unit, blocks)
    return (n, g, p0, min(p0 + chunk, span), b0, b1, b0 * TILE_ROWS,
            min(b1 * TILE_ROWS, c_out_g))


@njit(inline="always")
def phase_pairs(tap_counts, c_in_g):
    """``first[ph]``: the (input channel, tap) pairs of the phases before
    ``ph`` in a group's row of the weight table (``first[-1]``: all)."""
    first = np.empty(tap_counts.shape[0] + 1, dtype=np.int64)
    first[0] = 0
    for ph in range(tap_counts.shape[0]):
        first[ph + 1] = first[ph] + c_in_g * tap_counts[ph]
    return first


@njit(inline="always")
def phase_stretch(first_pair, ph, blocks):
    """``(start, pairs)``: where phase ``ph``'s stretch starts in a group's
    row of the weight table, and its (input channel, tap) pairs."""
    return first_pair[ph] * blocks * TILE_ROWS, first_pair[ph + 1] - first_pair[ph]


@njit(inline="always")
def phase_weights(table, g, first_pair, ph, blocks):
    """Phase ``ph``'s ``(blocks, K * TILE_ROWS)`` weights of group ``g`` in
    the weight table (:func:`fill_weight_table`), a view."""
    start, pairs = phase_stretch(first_pair, ph, blocks)
    return table[g, start:start + blocks * pairs * TILE_ROWS].reshape((blocks, pairs * TILE_ROWS))


@njit(nogil=True, cache=True, _nrt=False)
def _phase_sums(acc, acc_first, acc_end, acc_pitch, xw, src, offsets, tap_copy, copy_size, ph,
                n_taps, shift, win_len, weights, g, task_groups, first_pair, blocks, b0, b1, c_in_g,
                c_out_g, rows, spans, segments, n_segments, tap_first, tap_end):
    """:func:`direct_tiled`'s sums of phase ``ph`` at one sweep's
    ``n_segments`` vectors of positions (window position ``shift`` on),
    blocks ``b0..b1`` of ``rows`` output channels of groups ``g .. g +
    task_groups``, each group's ``c_out_g`` rows on from ``acc[acc_first]``
    (before ``acc_end``): ``src`` gets each (input channel, tap) pair's
    offset in ``xw``, in the copy of the window the tap reads
    (``tap_copy``; copies ``copy_size`` apart), then the tiles run
    (:func:`.tile_products.phase_products`, or with ``spans``
    :func:`.tile_products.phase_products_spans`).
    Without reference counts (see :mod:`.register_tiles`): the phase's
    views of the accumulator and the weights counted theirs for every
    phase of every sweep."""
    for gt in range(task_groups):
        for ci in range(c_in_g):
            for t in range(n_taps):
                src[ci * n_taps + t] = (tap_copy[ph, t] * copy_size + (gt * c_in_g + ci) * win_len
                                        + offsets[ph, t] + shift)
        acc_ph = acc[acc_first + gt * c_out_g * acc_pitch:acc_end]
        wt = phase_weights(weights, g + gt, first_pair, ph, blocks)[b0:b1]
        if spans:
            phase_products_spans(acc_ph, acc_pitch, xw, src, c_in_g, n_taps, wt, rows, segments,
                                 n_segments, tap_first, tap_end)
        else:
            phase_products(acc_ph, acc_pitch, xw, src, c_in_g * n_taps, wt, rows, segments,
                           n_segments)


@njit(nogil=True, cache=True)
def _bias_runs(at, length, p0, p1, phases, pitch, stride, tap_counts, out_spatial):
    """The output rows of :func:`direct_tiled`'s positions ``p0 .. p1``
    that no tap reaches (their phase row has no taps: a kernel shorter
    than its stride along D or H), as runs of positions of an image's
    output in memory order (``at``, ``length``: channels first, of one
    channel's plane; channels last, each position's channels side by
    side), rows that continue one another merged; returns the runs'
    count. Written in these runs before the products, the bias reaches
    memory in long stretches: row by row, phase row after phase row, they
    went out 21 floats at a time and took most of a 1x1 kernel at stride 3
    or 4 (benchmarks/TUNING.md). (Channels last, the sums of such rows,
    zeros, were transposed out with the bias: r50, 3-D with taps in 1 of
    27 phases, took 1.3 times its channels-first time.)"""
    u_h, u_w = pitch[1], pitch[2]
    s_d, s_h, s_w = stride
    o_d, o_h, o_w = out_spatial
    first_row, last_row = p0 // u_w, (p1 - 1) // u_w
    count = 0
    for j_d in range(first_row // u_h, min(last_row // u_h + 1, phases[0, 3])):
        for r_d in range(min(s_d, o_d - j_d * s_d)):
            for row in range(max(first_row, j_d * u_h),
                             min(last_row + 1, j_d * u_h + phases[0, 4])):
                j_h = row - j_d * u_h
                ow_lo = max(p0 - row * u_w, 0) * s_w
                ow_hi = min(min(p1 - row * u_w, u_w) * s_w, o_w)
                if ow_hi <= ow_lo:
                    continue
                for r_h in range(min(s_h, o_h - j_h * s_h)):
                    first_ph = (r_d * s_h + r_h) * s_w
                    taps = 0
                    for r_w in range(s_w):
                        taps += tap_counts[first_ph + r_w]
                    if taps > 0:
                        continue
                    start = ((j_d * s_d + r_d) * o_h + j_h * s_h + r_h) * o_w + ow_lo
                    if count > 0 and at[count - 1] + length[count - 1] == start:
                        length[count - 1] += ow_hi - ow_lo
                    else:
                        at[count] = start
                        length[count] = ow_hi - ow_lo
                        count += 1
    return count


@njit(inline="always")
def _add_run(source, target, length, count, at_source, at_target, n, per_source):
    """Append the run of ``n`` targets from ``at_target`` (``n //
    per_source`` sources from ``at_source``: ``per_source`` targets
    interleave each source position) to the ``count`` runs of ``source``,
    ``target``, ``length``, or extend the last run where it continues in
    both; returns the new count."""
    last = count - 1
    if (count > 0 and length[last] % per_source == 0
            and source[last] + length[last] // per_source == at_source
            and target[last] + length[last] == at_target):
        length[last] += n
        return count
    source[count] = at_source
    target[count] = at_target
    length[count] = n
    return count + 1


@njit(nogil=True, cache=True, _nrt=False)
def _fill_window(xw, xf, win_len, run_src, run_dst, run_len, n_runs, image, channel0, plane,
                 c_in, c_in_g, layout):
    """:func:`direct_tiled`'s window ``xw`` (``c_in_g`` rows of ``win_len``
    and a vector of zeros) from the runs of input channels ``channel0 ..
    channel0 + c_in_g`` of ``xf`` (flat, ``c_in`` channels of ``plane``
    positions, in ``layout``; ``image``: the positions before the image),
    zeros where no run lands."""
    if layout == CHANNELS_FIRST:
        # Channel by channel, each row of the window written once, in
        # order: the zeros before each run, then the run, read where the
        # channel's rows follow each other in x (run by run across all
        # channels, hundreds of channels a plane apart, ran 6 % slower).
        # A run shorter than a vector (input rows of 5-8) is copied as one
        # whole vector: what it writes past the run, the zeros and the run
        # after it write over (past the row: the next channel's row, or the
        # zeros past the last). A loop per run of 6 made the copy most of
        # such a call; so did a loop per gap of one zero before each run
        # (kernel = stride 4: a third of a 0.6 ms call).
        lanes = simd.lanes(xw)
        last_vector = np.uint64(xf.size - lanes) if xf.size >= lanes else np.uint64(0)
        zeros = simd.zeros(xw)
        vector = np.uint64(lanes)
        for ci in range(c_in_g):
            row = np.uint64(ci * win_len)
            channel = np.uint64(image * c_in + (channel0 + ci) * plane)
            done = np.uint64(0)
            for r in range(n_runs):
                dst = np.uint64(run_dst[r])
                src = channel + np.uint64(run_src[r])
                if run_len[r] <= lanes and src <= last_vector and xf.size >= lanes and (
                        dst - done <= vector):
                    # A gap and a run of a vector or less: a vector of
                    # zeros from the gap, then the run's vector over it.
                    simd.store(xw, row + done, zeros)
                    simd.store(xw, row + dst, simd.load(xf, src))
                    done = dst + np.uint64(run_len[r])
                    continue
                for t in range(done, dst):
                    xw[row + t] = 0
                if run_len[r] <= lanes and src <= last_vector and xf.size >= lanes:
                    simd.store(xw, row + dst, simd.load(xf, src))
                else:
                    for t in range(np.uint64(run_len[r])):
                        xw[row + dst + t] = xf[src + t]
                done = dst + np.uint64(run_len[r])
            for t in range(done, np.uint64(win_len)):
                xw[row + t] = 0
        for t in range(c_in_g * win_len, xw.size):
            xw[t] = 0
        return
    if layout == COMPLEX_PARTS:
        # As channels first, a complex channel at a time (its parts' two
        # rows), each row written once: the whole window zeroed and then
        # the runs split channel by channel, one run at a time, took 8
        # times the real fill (to_rgb, 32 runs of 32 positions a window).
        for c in range(c_in_g // 2):
            row = 2 * c * win_len
            channel = image * (c_in // 2) + (channel0 // 2 + c) * plane
            done = 0
            for r in range(n_runs):
                xw[row + done:row + run_dst[r]] = 0
                xw[row + win_len + done:row + win_len + run_dst[r]] = 0
                split_parts(xf, 2 * (channel + run_src[r]), xw, row + run_dst[r], win_len,
                            run_len[r])
                done = run_dst[r] + run_len[r]
            xw[row + done:row + win_len] = 0
            xw[row + win_len + done:row + 2 * win_len] = 0
        xw[c_in_g * win_len:] = 0
        return
    if n_runs == 1:  # the gaps only: a window without padding is written once
        for ci in range(c_in_g):
            row = ci * win_len
            for t in range(row, row + run_dst[0]):
                xw[t] = 0
            for t in range(row + run_dst[0] + run_len[0], row + win_len):
                xw[t] = 0
        for t in range(c_in_g * win_len, xw.size):
            xw[t] = 0
    else:
        xw[:] = 0
    for r in range(n_runs):  # channels last: positions x channels to the channels' rows
        channels_to_rows(xf, (image + run_src[r]) * c_in + channel0, c_in, xw, run_dst[r],
                         win_len, run_len[r], c_in_g)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def direct_tiled(x, weights, offsets, tap_copy, copy_shift, tap_counts, phases, bias, out, pitch,
                 shift_max, stride, chunks_per_image, block_parts, sub, layout, streaming, together,
                 claimed, cancel):
    """Transposed convolution by phase planes and register tiles.

    x (N, C_in, D, H, W), out (N, C_out, OD, OH, OW) -- or with ``layout``
    :data:`CHANNELS_LAST` x (N, D, H, W, C_in), out (N, OD, OH, OW, C_out);
    :data:`COMPLEX_PARTS` as channels first, each pair of channels one
    complex channel -- bias (C_out,), all C-contiguous; ``weights`` from :func:`fill_weight_table`;
    ``offsets`` ``(n_phases, most taps)`` (each tap's flat offset) and
    ``tap_copy`` (the copy of the window it reads), ``copy_shift`` (each
    copy's shift along W), ``tap_counts`` (n_phases,),
    ``phases``/``pitch``/``shift_max`` from :func:`phase_tables`. A task
    owns one stretch of accumulator positions
    (of ``chunks_per_image``) and one range of blocks of output channels
    (of ``block_parts``) of one image and group, for every phase, so the
    outputs it writes are its own: it copies the zero-padded input window
    it reads, then per phase and per ``sub`` positions runs the tiles and
    scatters the sums (plus bias) to the output; with ``streaming``, a
    channels-last output in whole aligned lines goes straight to memory
    (:func:`scatter_last`); with ``together`` (channels last), a task owns
    every group of its stretch, each group's sums in its rows of one
    accumulator, and scatters the channels of each position whole. The
    layout changes only those two copies
    (channels last: the window gathered across channels, the sums
    scattered position by position; complex: each channel's two parts
    split to two rows, and merged back from two accumulators), not a sum:
    the same bits in every layout. Where a stretch of output positions
    holds nothing but a vector's worth of phases x channels (every one of a
    few channels last, or a complex channel's two parts), the sums go
    there in one interleave (:func:`interleave_rows`).
    """
    if layout == CHANNELS_LAST:
        n_batch, i_d, i_h, i_w, c_in = x.shape
        o_d, o_h, o_w, c_out = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    else:
        n_batch, c_in, i_d, i_h, i_w = x.shape
        c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    groups, n_phases = weights.shape[0], tap_counts.shape[0]
    lanes = simd.lanes(x.reshape(-1))
    c_in_g = c_in // groups
    c_out_g = c_out // groups
    blocks = -(-c_out_g // TILE_ROWS)
    first_pair = phase_pairs(tap_counts, c_in_g)
    u_h, u_w = pitch[1], pitch[2]
    s_d, s_h, s_w = stride
    span = phase_span(phases, pitch)
    halo = 0
    for ph in range(n_phases):
        for t in range(tap_counts[ph]):
            halo = max(halo, offsets[ph, t])
    # Stretches of whole vectors, so that positions on a vector boundary
    # stay on one in the window.
    chunk = -(-span // (chunks_per_image * lanes)) * lanes
    # Channels last, a task's channels are whole cache lines of each
    # position where blocks fill them: tasks that split a line between
    # two threads took it from each other (r09, 4 -> 144 channels in ranges
    # of 40: the scatter took 43 % of the call, 2.1 times channels first).
    line_blocks = (max(simd.LINE_BYTES // (x.itemsize * TILE_ROWS), 1)
                   if layout == CHANNELS_LAST else 1)
    xf, of = x.reshape(-1), out.reshape(-1)
    # The groups of a task: one, or every group (together).
    task_groups = groups if together else 1
    tasks = n_batch * (groups // task_groups) * chunks_per_image * block_parts
    # The rows each tap reaches, where some phase has pairs enough for
    # spans (else none: no phase asks).
    reach = tap_reach(offsets, tap_counts if c_in_g * tap_counts.max() >= SPANS_MIN_PAIRS
                      else tap_counts[:0], pitch, shift_max, i_d, i_h)
    # Output rows that no tap reaches are set to the bias up front
    # (_bias_runs), and their phase rows skipped; complex calls interleave
    # their parts' rows as they go.
    bias_runs = False
    # One output channel lies channels last as it does channels first: its
    # rows are scattered as such, in vector shuffles rather than transposed
    # part tiles of one channel (3-D 2 -> 1 k6 s2: 2.0 -> 1.55x the
    # channels-first time).
    scatter_first = layout == CHANNELS_FIRST or (layout == CHANNELS_LAST and c_out == 1)
    if layout != COMPLEX_PARTS:
        for ph_row in range(n_phases // s_w):
            row_taps = 0
            for r_w in range(s_w):
                row_taps += tap_counts[ph_row * s_w + r_w]
            bias_runs |= row_taps == 0
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, g, p0, p1, b0, b1, co0, co1 = task_bounds(task, span, chunk, blocks, block_parts,
                                                      chunks_per_image, groups // task_groups,
                                                      c_out_g, n_batch, layout == CHANNELS_LAST,
                                                      line_blocks)
        if p1 <= p0 or co1 <= co0:
            continue
        # The task's output channels (every group's, together).
        oc0, count = (0, c_out) if together else (g * c_out_g + co0, co1 - co0)
        win_len = simd.window_pitch(p1 - p0 + halo, lanes, x.itemsize)
        # The window's input rows, as runs of positions (from the image's
        # first, to the window's): rows that go on where the last one
        # ended in both (whole rows, no padding, as for a 1x1 kernel) are
        # one run, copied in one stretch instead of row by row.
        run_src = np.empty(win_len // u_w + 2, dtype=np.int64)
        run_dst = np.empty_like(run_src)
        run_len = np.empty_like(run_src)
        # The window: xp[p0 : p0 + win_len] of each input channel (rows
        # whose pitch is a multiple of the lanes load aligned vectors; an
        # odd number of cache lines keeps them in different L1 sets), and
        # a vector of zeros for the last vector of positions to read past
        # the end; then each copy of it, shifted along W (phase_tables).
        # (Reading x where it lies instead, where the window is one run,
        # was slower: 484 channels a plane apart thrash the cache.)
        window_rows = task_groups * c_in_g
        copy_size = window_rows * win_len + lanes
        xw = simd.aligned(np.empty(copy_shift.shape[0] * copy_size + lanes, dtype=x.dtype),
                          copy_shift.shape[0] * copy_size)
        for copy in range(copy_shift.shape[0]):
            # The input's first column in this copy's rows.
            first_w = shift_max[2] - copy_shift[copy]
            # np.int64(0), not 0: Numba compiles a callee for each type an
            # argument passes through while it types the caller, so a
            # literal 0 here would compile _fill_window (and _scatter_*
            # below) twice.
            n_runs = np.int64(0)
            for row in range(p0 // u_w, (p0 + win_len - 1) // u_w + 1):
                i_hh = row % u_h - shift_max[1]
                i_dd = row // u_h - shift_max[0]
                if i_dd < 0 or i_dd >= i_d or i_hh < 0 or i_hh >= i_h:
                    continue
                # xp positions of this input row, clipped to the row
                # (inputs past it reach no output) and to the window.
                lo = max(row * u_w + max(first_w, 0), p0)
                hi = min(row * u_w + min(first_w + i_w, u_w), p0 + win_len)
                if hi <= lo:
                    continue
                n_runs = _add_run(run_src, run_dst, run_len, n_runs,
                                  (i_dd * i_h + i_hh) * i_w + lo - row * u_w - first_w,
                                  lo - p0, hi - lo, 1)
            _fill_window(xw[copy * copy_size:(copy + 1) * copy_size], xf, win_len, run_src,
                         run_dst, run_len, n_runs, n * i_d * i_h * i_w, g * c_in_g,
                         i_d * i_h * i_w, c_in, window_rows, layout)
        # One accumulator per W phase: the phases of a row are computed
        # side by side and interleaved into it in one contiguous pass.
        # Positions past a sweep's length, up to a vector, are scratch.
        acc_pitch = sub + lanes
        # (Together, each group's rows follow the last group's: its last
        # block's tiles write only the rows of its channels.)
        block = (count if together else (b1 - b0) * TILE_ROWS) * acc_pitch
        acc = simd.aligned(np.empty(s_w * block + lanes, dtype=out.dtype), s_w * block)
        src = np.empty(c_in_g * tap_counts.max(), dtype=np.int64)
        segments = np.empty(sub // lanes + sub // u_w + 2, dtype=np.int64)
        tap_first = np.empty_like(segments)
        tap_end = np.empty_like(segments)
        row_acc = np.empty(sub // u_w + 2, dtype=np.int64)
        row_out = np.empty_like(row_acc)
        row_len = np.empty_like(row_acc)
        # Where each row of sums is, and its bias, for interleave_rows.
        rows_at = np.empty(lanes, dtype=np.int64)
        row_bias = np.empty(lanes, dtype=out.dtype)
        # ... and the output position of each sum, for scatter_last.
        out_at = np.empty(s_w * acc_pitch if layout == CHANNELS_LAST else 0, dtype=np.int64)
        # Where the task writes every channel and they end mid vector, the
        # sums of lanes outputs a phase (all of s_w * lanes positions) for
        # scatter_last's stage.
        stage_length = lanes * s_w * c_out
        staged = (layout == CHANNELS_LAST and count == c_out and c_out % lanes != 0
                  and stage_length * out.itemsize <= CHANNELS_LAST_STAGE_MAX_BYTES)
        stage = simd.aligned(np.empty((stage_length if staged else 0) + lanes,
                                      dtype=out.dtype), stage_length if staged else 0)
        # A complex channel's parts, where the stride is too large to
        # interleave them at once: room for a sweep's outputs (at most
        # ``sub`` positions of every W phase) per part.
        parts_pitch = sub * s_w if layout == COMPLEX_PARTS else 0
        parts = np.empty(2 * parts_pitch, dtype=out.dtype)
        # Rows that the vector interleave would write mostly element by
        # element take the table of :func:`scatter_by_table` instead.
        by_table = scatter_first and (
            (s_w != 1 and s_w != 2 and s_w != 4) or o_w % (s_w * lanes) * 2 > o_w)
        # (strides 1-4 go in vectors: see scatter_by_table)
        table = np.empty(sub * s_w + s_w if by_table and s_w > 4 else 0, dtype=np.int64)
        if bias_runs:
            run_at = np.empty(((p1 - p0) // u_w + 2) * s_d * s_h, dtype=np.int64)
            run_length = np.empty_like(run_at)
            n_bias_runs = _bias_runs(run_at, run_length, p0, p1, phases, pitch, stride,
                                     tap_counts, (o_d, o_h, o_w))
            # (+ 0.0: a sum of zero products and a bias of -0.0 is +0.0)
            if layout == CHANNELS_LAST:  # each position's channels of the task
                # In vectors, the last one masked: LLVM turned the loop
                # element by element into gathers (r50, 3-D with taps in
                # 1 of 27 phases: a fifth of the call).
                zero = simd.zeros(of)
                whole = count // lanes * lanes
                for i in range(n_bias_runs):
                    at = (n * o_d * o_h * o_w + run_at[i]) * c_out + oc0
                    for t in range(run_length[i]):
                        for c in range(0, whole, lanes):
                            simd.store(of, at + c, simd.add(simd.load(bias, oc0 + c), zero))
                        if whole < count:
                            simd.store_part(of, at + whole, simd.add(
                                simd.load_part(bias, oc0 + whole, count - whole), zero),
                                count - whole)
                        at += c_out
            else:
                for co in range(co0, co1):
                    oc = g * c_out_g + co
                    value = bias[oc] + 0.0
                    o_channel = (n * c_out + oc) * o_d * o_h * o_w
                    for i in range(n_bias_runs):
                        at = np.uint64(o_channel + run_at[i])
                        for t in range(np.uint64(run_length[i])):
                            of[at + t] = value
        for ph_row in range(n_phases // s_w):
            first_ph = ph_row * s_w
            r_d, r_h = phases[first_ph, 0], phases[first_ph, 1]
            q_d, q_h = phases[first_ph, 3], phases[first_ph, 4]
            row_taps = 0
            for r_w in range(s_w):
                row_taps += tap_counts[first_ph + r_w]
            if bias_runs and row_taps == 0:
                continue  # the bias alone, written above
            for s0 in range(p0, p1, sub):
                length = min(sub, p1 - s0)
                n_segments = sweep_segments(segments, s0, length, lanes, phases, pitch)
                for r_w in range(s_w):
                    ph = first_ph + r_w
                    n_taps = tap_counts[ph]
                    if n_taps == 0:  # no taps (kernel < stride): the bias alone
                        acc[r_w * block:(r_w + 1) * block] = 0
                        continue
                    # Spans only for whole blocks of channels (the tiles of
                    # fewer sum every tap) and pairs enough to repay them.
                    spans = (co1 - co0 >= TILE_ROWS and c_in_g * n_taps >= SPANS_MIN_PAIRS
                             and tap_spans(
                        tap_first, tap_end, segments, n_segments, s0, lanes, reach[ph], n_taps,
                        phases[ph, 3], phases[ph, 4], u_h, u_w))
                    _phase_sums(acc, r_w * block, (r_w + 1) * block, acc_pitch, xw, src,
                                offsets, tap_copy, copy_size, ph, n_taps, s0 - p0, win_len,
                                weights, g, task_groups, first_pair, blocks, b0, b1, c_in_g,
                                c_out_g, co1 - co0, spans, segments, n_segments, tap_first,
                                tap_end)
                # Accumulator position P = (jd*u_h + jh)*u_w + jw of phase
                # r_w is output (jd*s_d + r_d, jh*s_h + r_h, jw*s_w + r_w).
                # The sweep's output rows once (where in acc, where in an
                # output channel, how many), then channel by channel, so
                # the output rows are written in order.
                n_rows = np.int64(0)  # not 0: see n_runs
                for row in range(s0 // u_w, (s0 + length - 1) // u_w + 1):
                    j_h = row % u_h
                    j_d = row // u_h
                    if j_d >= q_d or j_h >= q_h:
                        continue
                    jw_lo = max(s0 - row * u_w, 0)
                    ow_lo = jw_lo * s_w
                    ow_hi = min(min(s0 + length - row * u_w, u_w) * s_w, o_w)
                    if ow_hi <= ow_lo:
                        continue
                    # Rows that continue in both (whole rows of a stride-1
                    # H, as in a 1x1 kernel) make one long stretch.
                    n_rows = _add_run(row_acc, row_out, row_len, n_rows,
                                      row * u_w + jw_lo - s0,
                                      ((j_d * s_d + r_d) * o_h + j_h * s_h + r_h) * o_w + ow_lo,
                                      ow_hi - ow_lo, s_w)
                if not scatter_first and layout == CHANNELS_LAST:
                    if count == c_out and s_w * c_out <= lanes:
                        interleave_rows(acc, np.int64(0), acc_pitch, block, s_w, bias,
                                         np.int64(0), c_out, of, n * o_d * o_h * o_w * c_out,
                                         row_acc, row_out, row_len, n_rows, rows_at, row_bias)
                    else:
                        scatter_last(acc, acc_pitch, block, s_w, bias, of, row_acc, row_out,
                                      row_len, n_rows, n * o_d * o_h * o_w, c_out, oc0, count,
                                      streaming, out_at, stage)
                    continue
                if layout == COMPLEX_PARTS and 2 * s_w <= lanes:
                    for co in range(co0, co1, 2):  # (blocks and groups: whole pairs)
                        oc = g * c_out_g + co
                        interleave_rows(acc, (co - co0) * acc_pitch, acc_pitch, block, s_w,
                                         bias, oc, np.int64(2), of,
                                         (n * c_out + oc) * o_d * o_h * o_w, row_acc, row_out,
                                         row_len, n_rows, rows_at, row_bias)
                    continue
                if by_table:
                    scatter_by_table(acc, acc_pitch, block, s_w, bias, of, row_acc, row_out,
                                      row_len, n_rows,
                                      (n * c_out + g * c_out_g + co0) * o_d * o_h * o_w,
                                      o_d * o_h * o_w, g * c_out_g + co0, co1 - co0, table)
                    continue
                # Complex: a channel's two parts go to their rows of
                # ``parts`` (in L1), then merge into the complex output.
                target = parts if layout == COMPLEX_PARTS else of
                for co in range(co0, co1):
                    oc = g * c_out_g + co
                    a_channel = (co - co0) * acc_pitch
                    o_channel = (n * c_out + oc) * o_d * o_h * o_w
                    at = co % 2 * parts_pitch
                    for i in range(n_rows):
                        if layout != COMPLEX_PARTS:
                            at = o_channel + row_out[i]
                        interleave_real(acc, a_channel + row_acc[i], block, s_w, bias[oc],
                                        target, at, row_len[i])
                        at += row_len[i]
                    if layout == COMPLEX_PARTS and co % 2:
                        o_complex = (n * c_out + oc - 1) // 2 * o_d * o_h * o_w
                        at = 0
                        for i in range(n_rows):
                            interleave_parts_real(parts, at, parts_pitch, of,
                                                  2 * (o_complex + row_out[i]), row_len[i])
                            at += row_len[i]
