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

from ..config import FASTMATH
from . import atomics, simd
from .kernels import copy_elements, padded_row


def _row_sums(out, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, bias):
    """out[at + (j*s_w + r)*count + c] = the sum over the first
    ``n_taps[r]`` rows ``(w0, x0, w1, x1)`` of ``taps[r]`` of ``w[w0 + c]
    * x[x0 + j*count + c] + w[w1 + c] * x[x1 + j*count + c]`` (``w1 <
    0``: a lone tap, ``w[w0 + c] * x[x0 + j*count + c]``), in their order
    from zero, plus ``bias[c]``; for c < count, j_first <= j < j_end and
    phases r < s_w with ``j*s_w + r < o_w`` (flat arrays): a stretch of
    one of :func:`depthwise_last`'s output rows, a phase at a time (in the
    order of the outputs, depthwise_2d took 1.2x as long). Jitted code
    only."""
    raise NotImplementedError("_row_sums is for jitted code")


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
# LLVM's alias checks on every start), the channels past the last whole
# vector in masked ones, and element by element for other dtypes. One body
# with no helpers that take arrays: each call of an inlined helper in the
# loops cost two reference-count updates (atomic, about 50 cycles an
# output of 16 channels k3 s3).
@overload(_row_sums, inline="always")
def _row_sums_for(out, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, bias):
    if out.dtype in (types.float32, types.float64):
        def in_vectors(out, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, bias):
            lanes = simd.lanes(out)
            for phase in range(min(s_w, o_w)):
                for j in range(j_first, min(j_end, (o_w - phase + s_w - 1) // s_w)):
                    a, s = at + (j * s_w + phase) * count, j * count
                    for c in range(0, count, lanes):
                        part = min(lanes, count - c)
                        total = simd.zeros(out)
                        # The same loop twice, in whole vectors and in
                        # masked ones (all masked: depthwise_2d 1.2x slower).
                        if part == lanes:
                            for t in range(n_taps[phase]):
                                w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s + c
                                w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s + c
                                if taps[phase, t, 2] < 0:
                                    total = simd.fma(simd.load(w, w0), simd.load(x, x0), total)
                                else:
                                    total = simd.add(total, simd.fma(
                                        simd.load(w, w0), simd.load(x, x0),
                                        simd.mul(simd.load(w, w1), simd.load(x, x1))))
                            simd.store(out, a + c, simd.add(total, simd.load(bias, c)))
                            continue
                        for t in range(n_taps[phase]):
                            w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s + c
                            w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s + c
                            if taps[phase, t, 2] < 0:
                                total = simd.fma(simd.load_part(w, w0, part),
                                                 simd.load_part(x, x0, part), total)
                            else:
                                total = simd.add(total, simd.fma(
                                    simd.load_part(w, w0, part), simd.load_part(x, x0, part),
                                    simd.mul(simd.load_part(w, w1, part),
                                             simd.load_part(x, x1, part))))
                        simd.store_part(out, a + c,
                                        simd.add(total, simd.load_part(bias, c, part)), part)
        return in_vectors

    element = out.dtype

    def by_element(out, at, w, x, taps, n_taps, j_first, j_end, s_w, o_w, count, bias):
        for phase in range(min(s_w, o_w)):
            for j in range(j_first, min(j_end, (o_w - phase + s_w - 1) // s_w)):
                a, s = at + (j * s_w + phase) * count, j * count
                for c in range(count):
                    total = element(0)
                    for t in range(n_taps[phase]):
                        w0, x0 = taps[phase, t, 0] + c, taps[phase, t, 1] + s + c
                        w1, x1 = taps[phase, t, 2] + c, taps[phase, t, 3] + s + c
                        if taps[phase, t, 2] < 0:
                            total = _fma_any(w[w0], x[x0], total)
                        else:
                            total = total + _fma_any(w[w0], x[x0], w[w1] * x[x1])
                    out[a + c] = total + bias[c]
    return by_element


@njit(inline="always")
def _row_source(k, lead, s_w, d_w, p_w, c):
    """Where W tap ``k`` reads the first output of its phase in a
    zero-padded channels-last row (:func:`.kernels.padded_row`'s ``lead``,
    ``c`` channels per position)."""
    return (lead - (k * d_w - p_w) // s_w) * c


@njit(inline="always")
def _list_pairs(taps, n_taps, w_row, r_first, k_w, s_w, d_w, p_w, lead, c):
    """Append the W taps of weight row ``w_row`` (its input row at
    ``r_first`` of the padded rows) to each phase's list as
    :func:`.kernels.direct_planes` sums them: the taps ``kw, kw + s_w,
    ...`` two at a time, for each ``kw < s_w`` in turn, then one left
    over."""
    for kw in range(min(s_w, k_w)):
        phase = (kw * d_w - p_w) % s_w
        for k2 in range(kw, k_w - s_w, 2 * s_w):
            t = n_taps[phase]
            taps[phase, t, 0] = (w_row + k2) * c
            taps[phase, t, 1] = r_first + _row_source(k2, lead, s_w, d_w, p_w, c)
            taps[phase, t, 2] = (w_row + k2 + s_w) * c
            taps[phase, t, 3] = r_first + _row_source(k2 + s_w, lead, s_w, d_w, p_w, c)
            n_taps[phase] = t + 1
        if (k_w - 1 - kw) // s_w % 2 == 0:
            last = kw + (k_w - 1 - kw) // s_w * s_w
            t = n_taps[phase]
            taps[phase, t, 0] = (w_row + last) * c
            taps[phase, t, 1] = r_first + _row_source(last, lead, s_w, d_w, p_w, c)
            taps[phase, t, 2] = -1
            n_taps[phase] = t + 1


def _copy_repeated(dst, at, src, first, positions, c_in, multiplier):
    """dst[at + (p*c_in + ci)*multiplier + m] = src[first + p*c_in + ci]
    for p < positions, ci < c_in, m < multiplier (flat arrays): input
    channels side by side, each as many times as it has output channels.
    Jitted code only."""
    raise NotImplementedError("_copy_repeated is for jitted code")


# A multiplier of 2 in vectors, each stored interleaved with itself: one
# element at a time, the copies took 5 of r43's 5.3 ms (45 -> 90 channels,
# k4, each input row copied for the 4 output rows it reaches).
@overload(_copy_repeated, inline="always")
def _copy_repeated_for(dst, at, src, first, positions, c_in, multiplier):
    vectors = dst.dtype in (types.float32, types.float64)

    def copy_repeated(dst, at, src, first, positions, c_in, multiplier):
        if multiplier == 1:
            copy_elements(dst, at, src, first, positions * c_in)
            return
        whole = 0
        if vectors and multiplier == 2:
            lanes = simd.lanes(src)
            whole = positions * c_in // lanes * lanes
            for e in range(0, whole, lanes):
                value = simd.load(src, first + e)
                simd.store_interleaved(dst, at + 2 * e, (value, value))
        for e in range(whole, positions * c_in):
            value = src[first + e]
            for m in range(multiplier):
                dst[at + e * multiplier + m] = value
    return copy_repeated


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def depthwise_last(x, w_t, bias, out, stride, dilation, pad, paired, parts, claimed, cancel):
    """A depthwise call (each group one input channel, ``multiplier``
    output channels) on channels-last data, for finite weights, with the
    sums of a channels-first kernel: :func:`.kernels.direct_planes`' (``paired``)
    or :func:`.kernels.direct_rows`' and the phase tiles'.

    x (N, D, H, W, C_in), out (N, OD, OH, OW, C) with C = C_in *
    multiplier, ``w_t`` (KD, KH, KW, C) the weights tap by tap, bias (C,),
    all C-contiguous. Each output gets the channels-first kernel's terms
    in its order -- planes and rows outside the input skipped, along W the
    taps of a phase in order (``paired``: two at a time) over a
    zero-padded input row, the bias last -- so the same bits; but every
    loop runs along the channels, which lie side by side, so nothing is
    transposed. A task kernel (:func:`.launch.parallel`), a task for each
    of ``parts`` stretches of an output row ``(n, od, oh)``: the
    stretch of its input rows that it reads is copied into zero-padded
    rows (each input channel repeated for its output channels), the taps
    of each W phase listed once as offsets into them and into ``w_t``, and
    each output summed over its list and written once
    (:func:`_row_sums`).
    """
    n_batch, i_d, i_h, i_w, c_in = x.shape
    o_d, o_h, o_w, c = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    multiplier = c // c_in
    k_d, k_h, k_w = w_t.shape[0], w_t.shape[1], w_t.shape[2]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    # Each input row that reaches the output row at padded[(r*length +
    # lead + iw) * c] (r counts those rows), zeros around it.
    per_phase = -(-o_w // s_w)
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, per_phase)
    row_size = length * c
    # Output j of a phase reads inputs j - shift for shifts from the first
    # tap's to the last's.
    shift_first, shift_last = -p_w // s_w, ((k_w - 1) * d_w - p_w) // s_w
    # Taps kd that reach an output plane are s_d / gcd(s_d, d_d) apart.
    most_rows = (-(-k_d // (s_d // math.gcd(s_d, d_d)))
                 * -(-k_h // (s_h // math.gcd(s_h, d_h))))
    padded = np.zeros(most_rows * row_size, dtype=x.dtype)
    # Each W phase's taps, (w0, x0, w1, x1) as _row_sums reads them.
    taps = np.empty((s_w, most_rows * k_w, 4), dtype=np.int64)
    n_taps = np.zeros(s_w, dtype=np.int64)
    xf, wf, of = x.reshape(-1), w_t.reshape(-1), out.reshape(-1)
    tasks = n_batch * o_d * o_h * parts
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        row, part = task // parts, task % parts
        j_first, j_end = part * per_phase // parts, (part + 1) * per_phase // parts
        # The inputs this stretch reads; the rest of a padded row holds
        # zeros or inputs copied for another stretch, never read here.
        iw_first = min(max(j_first - shift_last, 0), i_w)
        iw_end = max(min(j_end - shift_first, i_w), iw_first)
        oh = row % o_h
        od = row // o_h % o_d
        n = row // (o_h * o_d)
        n_taps[:] = 0
        r_first = 0  # padded's next free row
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
                _copy_repeated(padded, r_first + (lead + iw_first) * c, xf,
                               (((n * i_d + i_dd) * i_h + i_hh) * i_w + iw_first) * c_in,
                               iw_end - iw_first, c_in, multiplier)
                w_row = (kd * k_h + kh) * k_w
                if paired:
                    _list_pairs(taps, n_taps, w_row, r_first, k_w, s_w, d_w, p_w, lead, c)
                else:
                    for kw in range(k_w):  # each phase's taps in their order
                        phase = (kw * d_w - p_w) % s_w
                        t = n_taps[phase]
                        taps[phase, t, 0] = (w_row + kw) * c
                        taps[phase, t, 1] = r_first + _row_source(kw, lead, s_w, d_w, p_w, c)
                        taps[phase, t, 2] = -1
                        n_taps[phase] = t + 1
                r_first += row_size
        # Every phase, those no tap reaches too: they get the bias alone.
        _row_sums(of, row * o_w * c, wf, padded, taps, n_taps, j_first, j_end, s_w, o_w, c,
                  bias)
