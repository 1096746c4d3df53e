"""``depthwise_last``: depthwise calls on channels-last data, where they lie.

A depthwise call (each group one input channel and one or a few output
channels) has no channel sums to tile, and on channels-last data the
channels of a position lie side by side: so every loop here runs along
them, in vectors of channels, and nothing is transposed. Each output gets
the terms of the channels-first kernel that the call's route runs, in its
order, so the same bits: :func:`.kernels.direct_planes`' (the taps of a W
phase two at a time) or :func:`.kernels.direct_rows`' and the phase
tiles' (one at a time, in order; :data:`.driver.DEPTHWISE_LAST`).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import config
from ..config import FASTMATH
from . import atomics, simd
from .kernels import padded_row


def _row_sums(stage, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, pitch, bias,
              dest, staged, boundary):
    """dest[at + (j*s_w + r)*count + c] = the sum over the first
    ``n_taps[r]`` rows ``(w0, x0, w1, x1)`` of ``taps[r]`` of ``w[w0 + c]
    * x[x0 + j*pitch + c] + w[w1 + c] * x[x1 + j*pitch + c]`` (``w1 <
    0``: a lone tap, ``w[w0 + c] * x[x0 + j*pitch + c]``), in their order
    from zero, plus ``bias[c]``; for c < count, j_first <= j < j_end and
    phases r < s_w with ``j*s_w + r < o_w`` (flat arrays): a stretch of
    one of :func:`depthwise_last`'s output rows, its inputs a position
    every ``pitch`` elements. Four positions of a phase at a time, then
    the last ones. With ``staged``, ``stage`` has room for four positions
    of every phase (see :func:`depthwise_last`): every phase's four
    positions are summed into it before the next four, and leave it as
    one run, its vectors stored on ``dest``'s vector
    boundaries (``boundary``: :func:`.simd.lanes_before_boundary`); else a
    phase at a time, over the stretch (in the order of the outputs,
    depthwise_2d took 1.2x as long). Jitted code only."""
    raise NotImplementedError("_row_sums is for jitted code")


#: Positions of a phase summed together by :func:`_row_sums`.
_TILE = 4


@njit(inline="always")
def _fma_any(a, b, addend):
    return a * b + addend


# Each output's sum stays in a register from its first tap to its store:
# summed in an accumulator row in L1 instead (zeroed, one pass per tap and
# a last pass to add the bias), depthwise_2d took 1.09 against 0.93 ms on
# one thread, the same bits. The terms are exactly those that the channels-
# first kernels' loops compile to: ``sum + fma(w0, x0, w1 * x1)`` for a
# pair of taps (direct_planes), ``fma(w, x, sum)`` for one; in explicit
# vectors for float32/float64 (a loop over a few vectors of channels paid
# LLVM's alias checks on every start), and element by element for other
# dtypes. Four positions of a phase share each tap's list entry and
# weights, and along W at stride 1 three of its inputs with the next tap:
# a position at a time, the loop paid a list entry, a weight load and the
# index arithmetic for each vector FMA, and two loads split across cache
# lines (r43, 45 -> 90 channels k4 s1: 2.1 ms; four positions 1.55 ms,
# whole vectors a position 1.2 ms, the inputs reused 1.07 ms). The loads
# are all masked, with one mask per vector of channels: no slower than
# plain ones once a tap's four positions share it. One body with no
# helpers that take arrays: each call of an inlined helper in the loops
# cost two reference-count updates (atomic, about 50 cycles an output of
# 16 channels k3 s3).
@overload(_row_sums, inline="always")
def _row_sums_for(stage, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, pitch, bias,
                  dest, staged, boundary):
    if dest.dtype in (types.float32, types.float64):
        def in_vectors(stage, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, pitch, bias,
                       dest, staged, boundary):
            lanes = simd.lanes(dest)
            step = s_w * count  # from one output of a phase to the next
            phases = min(s_w, o_w)
            # Staged, every phase's four positions before the next four,
            # the phases' outputs then one run; else phase by phase, each
            # over the stretch.
            rounds, per_round = (1, phases) if staged else (phases, 1)
            for round_ in range(rounds):
                p0 = round_ * per_round
                # Where the round's last phase's outputs end (the others
                # have as many, or one more).
                j_stop = min(j_end, (o_w - p0 - per_round + s_w) // s_w)
                j = j_first
                while j + _TILE <= j_stop:
                    first = at + j * step  # the tile's first output
                    base = 0 if staged else first
                    for phase in range(p0, p0 + per_round):
                        for c in range(0, count, lanes):
                            # The last vector of channels masked (its loads
                            # and stores).
                            part = min(lanes, count - c)
                            add_bias = simd.load_part(bias, c, part)
                            a, s = base + phase * count + c, j * pitch + c
                            total0 = total1 = total2 = total3 = simd.zeros(dest)
                            in0 = in1 = in2 = in3 = total0  # the four positions' inputs
                            behind = -1  # where a tap reuses the last one's inputs
                            for t in range(n_taps[phase]):
                                w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s
                                weight0 = simd.load_part(w, w0, part)
                                if taps[phase, t, 2] < 0:
                                    if x0 == behind:
                                        # A position back: three of the last
                                        # tap's inputs are this one's (the
                                        # taps along W at stride 1).
                                        in3, in2, in1 = in2, in1, in0
                                        in0 = simd.load_part(x, x0, part)
                                    else:
                                        in0 = simd.load_part(x, x0, part)
                                        in1 = simd.load_part(x, x0 + pitch, part)
                                        in2 = simd.load_part(x, x0 + 2 * pitch, part)
                                        in3 = simd.load_part(x, x0 + 3 * pitch, part)
                                    behind = x0 - pitch
                                    total0 = simd.fma(weight0, in0, total0)
                                    total1 = simd.fma(weight0, in1, total1)
                                    total2 = simd.fma(weight0, in2, total2)
                                    total3 = simd.fma(weight0, in3, total3)
                                    continue
                                behind = -1
                                w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s
                                weight1 = simd.load_part(w, w1, part)
                                total0 = simd.add(total0, simd.fma(
                                    weight0, simd.load_part(x, x0, part),
                                    simd.mul(weight1, simd.load_part(x, x1, part))))
                                total1 = simd.add(total1, simd.fma(
                                    weight0, simd.load_part(x, x0 + pitch, part),
                                    simd.mul(weight1, simd.load_part(x, x1 + pitch, part))))
                                total2 = simd.add(total2, simd.fma(
                                    weight0, simd.load_part(x, x0 + 2 * pitch, part),
                                    simd.mul(weight1, simd.load_part(x, x1 + 2 * pitch, part))))
                                total3 = simd.add(total3, simd.fma(
                                    weight0, simd.load_part(x, x0 + 3 * pitch, part),
                                    simd.mul(weight1, simd.load_part(x, x1 + 3 * pitch, part))))
                            total0 = simd.add(total0, add_bias)
                            total1 = simd.add(total1, add_bias)
                            total2 = simd.add(total2, add_bias)
                            total3 = simd.add(total3, add_bias)
                            # (Each array stored to by name: one chosen
                            # between them, r59 took 1.15x as long.)
                            if staged:
                                simd.store_part(stage, a, total0, part)
                                simd.store_part(stage, a + step, total1, part)
                                simd.store_part(stage, a + 2 * step, total2, part)
                                simd.store_part(stage, a + 3 * step, total3, part)
                            else:
                                simd.store_part(dest, a, total0, part)
                                simd.store_part(dest, a + step, total1, part)
                                simd.store_part(dest, a + 2 * step, total2, part)
                                simd.store_part(dest, a + 3 * step, total3, part)
                    if staged:
                        # The tile's outputs, one run, in whole vectors
                        # on the output's vector boundaries.
                        length = _TILE * step
                        e = min((boundary - first) % lanes, length)
                        if e > 0:
                            simd.store_part(dest, first, simd.load_part(stage, 0, e), e)
                        while e + lanes <= length:
                            simd.store(dest, first + e, simd.load(stage, e))
                            e += lanes
                        if e < length:
                            simd.store_part(dest, first + e, simd.load_part(stage, e, length - e),
                                            length - e)
                    j += _TILE
                j_tail = j
                for phase in range(p0, p0 + per_round):
                    # The last positions, one at a time.
                    for j in range(j_tail, min(j_end, (o_w - phase + s_w - 1) // s_w)):
                        for c in range(0, count, lanes):
                            part = min(lanes, count - c)
                            add_bias = simd.load_part(bias, c, part)
                            a, s = at + (j * s_w + phase) * count + c, j * pitch + c
                            total = simd.zeros(dest)
                            for t in range(n_taps[phase]):
                                w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s
                                if taps[phase, t, 2] < 0:
                                    total = simd.fma(simd.load_part(w, w0, part),
                                                     simd.load_part(x, x0, part), total)
                                    continue
                                w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s
                                total = simd.add(total, simd.fma(
                                    simd.load_part(w, w0, part), simd.load_part(x, x0, part),
                                    simd.mul(simd.load_part(w, w1, part),
                                             simd.load_part(x, x1, part))))
                            simd.store_part(dest, a, simd.add(total, add_bias), part)
        return in_vectors

    element = dest.dtype

    def by_element(stage, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, pitch, bias,
                   dest, staged, boundary):
        for phase in range(min(s_w, o_w)):
            for j in range(j_first, min(j_end, (o_w - phase + s_w - 1) // s_w)):
                a, s = at + (j * s_w + phase) * count, j * pitch
                for c in range(count):
                    total = element(0)
                    for t in range(n_taps[phase]):
                        w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s + c
                        w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s + c
                        if taps[phase, t, 2] < 0:
                            total = _fma_any(w[w0], x[x0], total)
                        else:
                            total = total + _fma_any(w[w0], x[x0], w[w1] * x[x1])
                    dest[a + c] = total + bias[c]
    return by_element


@njit(inline="always")
def _row_source(k, lead, s_w, d_w, p_w, pitch):
    """Where W tap ``k`` reads the first output of its phase in a
    zero-padded channels-last row (:func:`.kernels.padded_row`'s ``lead``,
    a position every ``pitch`` elements)."""
    return (lead - (k * d_w - p_w) // s_w) * pitch


@njit(inline="always")
def _list_pairs(taps, n_taps, w_row, r_first, k_w, s_w, d_w, p_w, lead, pitch):
    """Append the W taps of weight row ``w_row`` (its input row at
    ``r_first`` of the padded rows) to each phase's list as
    :func:`.kernels.direct_planes` sums them: the taps ``kw, kw + s_w,
    ...`` two at a time, for each ``kw < s_w`` in turn, then one left
    over."""
    for kw in range(min(s_w, k_w)):
        phase = (kw * d_w - p_w) % s_w
        for k2 in range(kw, k_w - s_w, 2 * s_w):
            t = n_taps[phase]
            taps[phase, t, 0] = (w_row + k2) * pitch
            taps[phase, t, 1] = r_first + _row_source(k2, lead, s_w, d_w, p_w, pitch)
            taps[phase, t, 2] = (w_row + k2 + s_w) * pitch
            taps[phase, t, 3] = r_first + _row_source(k2 + s_w, lead, s_w, d_w, p_w, pitch)
            n_taps[phase] = t + 1
        if (k_w - 1 - kw) // s_w % 2 == 0:
            last = kw + (k_w - 1 - kw) // s_w * s_w
            t = n_taps[phase]
            taps[phase, t, 0] = (w_row + last) * pitch
            taps[phase, t, 1] = r_first + _row_source(last, lead, s_w, d_w, p_w, pitch)
            taps[phase, t, 2] = -1
            n_taps[phase] = t + 1


def channel_pitch(channels, itemsize):
    """Elements from one position to the next in :func:`depthwise_last`'s
    padded rows and weights: ``channels`` rounded up to whole vectors, so
    that no vector of a position's channels crosses a cache line (r43, 45
    -> 90 channels k4: 1.2 against 1.4 ms); fewer than a vector as they
    are, for the copy into the padded rows then runs in whole vectors
    (r59, 3 -> 6 channels k3 s3: at a pitch of 8, 2.4 against 2.0 ms)."""
    lanes = max(simd.VECTOR_BYTES // itemsize, 1)
    return -(-channels // lanes) * lanes if channels > lanes else channels


def _copy_repeated(dst, at, src, first, positions, c_in, multiplier, pitch):
    """dst[at + p*pitch + ci*multiplier + m] = src[first + p*c_in + ci] for p
    < positions, ci < c_in, m < multiplier (flat arrays): input channels
    side by side, each as many times as it has output channels, a position
    every ``pitch`` elements. Jitted code only."""
    raise NotImplementedError("_copy_repeated is for jitted code")


# In vectors, a multiplier of 2 each stored interleaved with itself: one
# element at a time, the copies took 5 of r43's 5.3 ms (45 -> 90 channels,
# k4, each input row copied for the 4 output rows it reaches).
@overload(_copy_repeated, inline="always")
def _copy_repeated_for(dst, at, src, first, positions, c_in, multiplier, pitch):
    vectors = dst.dtype in (types.float32, types.float64)

    def copy_repeated(dst, at, src, first, positions, c_in, multiplier, pitch):
        # One run where the positions lie back to back, else one each.
        run = positions if pitch == c_in * multiplier else 1
        for p in range(0, positions, run):
            d, s = at + p * pitch, first + p * c_in
            if vectors and multiplier <= 2:
                lanes = simd.lanes(src)
                for e in range(0, run * c_in, lanes):
                    part = min(lanes, run * c_in - e)
                    value = simd.load_part(src, s + e, part)
                    if multiplier == 1:
                        simd.store_part(dst, d + e, value, part)
                    else:
                        simd.store_interleaved_first(dst, d + 2 * e, (value, value), 2 * part)
                continue
            for e in range(run * c_in):
                for m in range(multiplier):
                    dst[d + e * multiplier + m] = src[s + e]
    return copy_repeated


@njit(nogil=True, cache=True, _nrt=False)
def _copy_row(dst, at, src, first, positions, c_in, multiplier, pitch):
    """:func:`_copy_repeated` of one input row, without reference counts
    (see :mod:`.register_tiles`): inlined in :func:`depthwise_last`, each
    row copied counted its two arrays up and down (3900 counts a call of
    r15, 187 channels 3-D channels last)."""
    _copy_repeated(dst, at, src, first, positions, c_in, multiplier, pitch)


@njit(inline="always")
def row_stretch(task, parts, per_phase, row_blocks, row_block, o_d):
    """Task ``task`` of the split of output rows ``(n, od, oh)`` into blocks
    of ``row_block`` (``row_blocks`` an output plane) and of each row into
    ``parts`` stretches of its ``per_phase`` outputs a phase: ``(n, od,
    oh_first, j_first, j_end)``."""
    block, part = task // parts, task % parts
    return (block // (row_blocks * o_d), block // row_blocks % o_d,
            block % row_blocks * row_block, part * per_phase // parts,
            (part + 1) * per_phase // parts)


def stages_outputs(dtype, channels, kernel, stride, out_bytes) -> bool:
    """Whether :func:`depthwise_last` writes its outputs through a stage
    (real ``dtype``, ``channels`` output channels, ``kernel`` and
    ``stride`` the call's, ``out_bytes`` its output's size): where a
    position's channels pass a vector and end mid one, and the call is
    mostly stores to memory (``config.DEPTHWISE_LAST_STAGE_MAX_TAPS``)."""
    dtype = np.dtype(dtype)
    lanes = simd.VECTOR_BYTES // dtype.itemsize
    return (dtype.kind == "f" and channels > lanes and channels % lanes != 0
            and math.prod(kernel) <= config.DEPTHWISE_LAST_STAGE_MAX_TAPS * math.prod(stride)
            and out_bytes >= config.STREAM_OUTPUT_MIN_BYTES)


@njit(inline="always")
def _depthwise_last(x, w_t, bias, out, stride, dilation, pad, paired, parts, row_block,
                    ring_bytes, staged, claimed, cancel):
    """A depthwise call (each group one input channel, ``multiplier``
    output channels) on channels-last data, for finite weights, with the
    sums of a channels-first kernel: :func:`.kernels.direct_planes`' (``paired``)
    or :func:`.kernels.direct_rows`' and the phase tiles'.

    x (N, D, H, W, C_in), out (N, OD, OH, OW, C) with C = C_in *
    multiplier, ``w_t`` (KD, KH, KW, P) the weights tap by tap (``P =
    channel_pitch(C)``, the channels past C unread), bias (C,), all
    C-contiguous. Each output gets the channels-first kernel's terms
    in its order -- planes and rows outside the input skipped, along W the
    taps of a phase in order (``paired``: two at a time) over a
    zero-padded input row, the bias last -- so the same bits; but every
    loop runs along the channels, which lie side by side, so nothing is
    transposed. A task kernel (:func:`.launch.parallel`), a task for each
    of ``parts`` stretches of ``row_block`` output rows ``(n, od, oh)``:
    the stretch of the input rows they read is copied into zero-padded
    rows (each input channel repeated for its output channels, a position
    every P elements), once a task where they fit a ring of
    ``ring_bytes`` (else once an output row), the taps of each W phase
    listed once a row as offsets into them and into ``w_t``, and each
    output summed over its list and written once (:func:`_row_sums`);
    with ``staged`` (:func:`stages_outputs`), through a stage in L1.
    Compiled in two kernels, :func:`depthwise_last` and
    :func:`depthwise_last_staged`, each with ``staged`` a constant: with
    it an argument, the choice of array for each store (or of one array
    for them all) took 1.1-1.3x as long on short rows.
    """
    n_batch, i_d, i_h, i_w, c_in = x.shape
    o_d, o_h, o_w, c = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    multiplier = c // c_in
    pitch = w_t.shape[3]  # channel_pitch: c or more
    k_d, k_h, k_w = w_t.shape[0], w_t.shape[1], w_t.shape[2]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    # Each input row that reaches the output row at padded[(r*length +
    # lead + iw) * pitch] (r counts those rows), zeros around it.
    per_phase = -(-o_w // s_w)
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, per_phase)
    row_size = length * pitch
    # Output j of a phase reads inputs j - shift for shifts from the first
    # tap's to the last's.
    shift_first, shift_last = -p_w // s_w, ((k_w - 1) * d_w - p_w) // s_w
    # Taps kd that reach an output plane are s_d / gcd(s_d, d_d) apart.
    most_rows = (-(-k_d // (s_d // math.gcd(s_d, d_d)))
                 * -(-k_h // (s_h // math.gcd(s_h, d_h))))
    # The input rows an output row reads lie within ring_d planes and
    # ring_h rows: in a ring of slots (id % ring_d, ih % ring_h) they never
    # meet, and a row stays for the next output rows that read it (k4 s1
    # copied each input row four times: 0.5 of r43's 1.2 ms).
    ring_d, ring_h = (k_d - 1) * d_d // s_d + 1, (k_h - 1) * d_h // s_h + 1
    ring = ring_d * ring_h * row_size * x.itemsize <= ring_bytes
    slots = ring_d * ring_h if ring else most_rows
    held = np.empty(slots, dtype=np.int64)  # the input row in each slot
    # Starting on a vector boundary, as the pitch keeps each position's.
    room = np.zeros(slots * row_size + simd.VECTOR_BYTES, dtype=x.dtype)
    lead_bytes = (simd.VECTOR_BYTES - room.ctypes.data % simd.VECTOR_BYTES) % simd.VECTOR_BYTES
    padded = room[lead_bytes // room.itemsize:][:slots * row_size]
    # Each W phase's taps, (w0, x0, w1, x1) as _row_sums reads them.
    taps = np.empty((s_w, most_rows * k_w, 4), dtype=np.int64)
    n_taps = np.zeros(s_w, dtype=np.int64)
    xf, wf, of = x.reshape(-1), w_t.reshape(-1), out.reshape(-1)
    # With ``staged``, each tile of outputs (_TILE of every phase) goes
    # through a stage in L1.
    stage = np.empty(_TILE * s_w * c if staged else 0, dtype=out.dtype)
    # (simd.lanes_before_boundary takes real arrays only)
    boundary = np.int64(of.ctypes.data) // of.itemsize % max(simd.VECTOR_BYTES // of.itemsize, 1)
    row_blocks = -(-o_h // row_block)
    tasks = n_batch * o_d * row_blocks * parts
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, od, oh_first, j_first, j_end = row_stretch(task, parts, per_phase, row_blocks,
                                                      row_block, o_d)
        # The inputs this stretch reads; the rest of a padded row holds
        # zeros or inputs copied for another stretch, never read here.
        iw_first = min(max(j_first - shift_last, 0), i_w)
        iw_end = max(min(j_end - shift_first, i_w), iw_first)
        held[:] = -1  # (a row copied for another stretch holds other inputs)
        for oh in range(oh_first, min(oh_first + row_block, o_h)):
            n_taps[:] = 0
            next_slot = 0  # without the ring: the output row's next slot
            for kd in range(k_d):
                t_d = od + p_d - kd * d_d
                i_dd = t_d // s_d
                if t_d % s_d != 0 or not 0 <= i_dd < i_d:
                    continue
                for kh in range(k_h):
                    t_h = oh + p_h - kh * d_h
                    i_hh = t_h // s_h
                    if t_h % s_h != 0 or not 0 <= i_hh < i_h:
                        continue
                    slot = i_dd % ring_d * ring_h + i_hh % ring_h if ring else next_slot
                    next_slot += 1
                    r_first = slot * row_size
                    if held[slot] != i_dd * i_h + i_hh:
                        held[slot] = i_dd * i_h + i_hh
                        _copy_row(padded, r_first + (lead + iw_first) * pitch, xf,
                                  (((n * i_d + i_dd) * i_h + i_hh) * i_w + iw_first) * c_in,
                                  iw_end - iw_first, c_in, multiplier, pitch)
                    w_row = (kd * k_h + kh) * k_w
                    if paired:
                        _list_pairs(taps, n_taps, w_row, r_first, k_w, s_w, d_w, p_w, lead,
                                    pitch)
                    else:
                        for kw in range(k_w):  # each phase's taps in their order
                            phase = (kw * d_w - p_w) % s_w
                            t = n_taps[phase]
                            taps[phase, t, 0] = (w_row + kw) * pitch
                            taps[phase, t, 1] = r_first + _row_source(kw, lead, s_w, d_w, p_w,
                                                                      pitch)
                            taps[phase, t, 2] = -1
                            n_taps[phase] = t + 1
            # Every phase, those no tap reaches too: they get the bias alone.
            _row_sums(stage, ((n * o_d + od) * o_h + oh) * o_w * c, wf, padded, taps, n_taps,
                      j_first, j_end, s_w, o_w, c, pitch, bias, of, staged, boundary)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def depthwise_last(x, w_t, bias, out, stride, dilation, pad, paired, parts, row_block,
                   ring_bytes, claimed, cancel):
    """:func:`_depthwise_last`, each output stored where it lies."""
    _depthwise_last(x, w_t, bias, out, stride, dilation, pad, paired, parts, row_block,
                    ring_bytes, False, claimed, cancel)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def depthwise_last_staged(x, w_t, bias, out, stride, dilation, pad, paired, parts, row_block,
                          ring_bytes, claimed, cancel):
    """:func:`_depthwise_last` through a stage (:func:`stages_outputs`)."""
    _depthwise_last(x, w_t, bias, out, stride, dilation, pad, paired, parts, row_block,
                    ring_bytes, True, claimed, cancel)
