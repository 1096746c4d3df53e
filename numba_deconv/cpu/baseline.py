"""The baseline kernel: quick to compile, and bitwise the same as the tuned ones.

A tuned kernel takes seconds to compile (register tiles, vector shuffles,
many specialised helpers). While it compiles in the background
(:mod:`.tiering`), calls that would run it run this kernel instead: one
short function of plain loops, which Numba compiles in about 2 s.

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

All start from zero and add the bias last, as the tuned kernels do. It is
a task kernel (:func:`.launch.parallel`): a task is one output row.
"""

import numpy as np
from numba import njit

from ..config import FASTMATH
from . import atomics, simd
from .kernels import padded_row

#: The orders the baseline can sum in ...
ROWS, TILES, PLANES = 0, 1, 2
#: ... by the tuned kernel that sums so.
ORDERS = {"rows_serial": ROWS, "rows": ROWS, "phase_tiles": TILES, "planes": PLANES}


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def gather_in_order(x, w, bias, out, groups, stride, dilation, pad, order, claimed, cancel):
    """``out`` from ``x`` and ``w`` as the kernel of ``order`` (:data:`ROWS`,
    :data:`TILES` or :data:`PLANES`) computes it, from the same arrays and
    arguments (rank 3, channels first, C-contiguous)."""
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    c_in_g = c_in // groups
    zero = np.zeros(1, dtype=x.dtype)[0]
    # The row's outputs by phase, acc[phase * per_phase + j] for output
    # j*s_w + phase, so that every tap adds to a contiguous stretch (the
    # loops vectorise); only phases below o_w have outputs.
    per_phase = -(-o_w // s_w)
    acc = np.empty(min(s_w, o_w) * per_phase, dtype=out.dtype)
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    tiles_order = order == TILES
    # PLANES: an input row at padded[lead + i], zeros around it.
    lead, length = padded_row(k_w, s_w, d_w, p_w, i_w, per_phase)
    padded = np.zeros(length, dtype=x.dtype)
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
        # The tiles' order is (channel, kd, kh, kw), the rows' (kd, kh,
        # channel, kw): one loop nest serves both, the channel loop outside
        # or inside.
        for outer in range(c_in_g if tiles_order else 1):
            for kd in range(k_d):
                t_d = od + p_d - kd * d_d
                if t_d % s_d != 0:
                    continue  # another phase's tap
                i_dd = t_d // s_d
                in_d = 0 <= i_dd < i_d
                if not (in_d or tiles_order):
                    continue
                for kh in range(k_h):
                    t_h = oh + p_h - kh * d_h
                    if t_h % s_h != 0:
                        continue
                    i_hh = t_h // s_h
                    in_dh = in_d and 0 <= i_hh < i_h
                    if not (in_dh or tiles_order):
                        continue
                    for inner in range(1 if tiles_order else c_in_g):
                        ci = g * c_in_g + (outer if tiles_order else inner)
                        x_row = (((n * c_in + ci) * i_d + i_dd) * i_h + i_hh) * i_w
                        w_taps = (((ci * c_out_g + co_g) * k_d + kd) * k_h + kh) * k_w
                        if order == PLANES:
                            for i in range(i_w):  # (a slice copy compiles 3 s longer)
                                padded[lead + i] = xf[x_row + i]
                            _planes_taps(acc, per_phase, padded, lead, w, ci, co_g, kd, kh,
                                         s_w, d_w, p_w, o_w)
                            continue
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
                            if not in_dh:
                                j_lo = j_hi = n_j
                            at = phase * per_phase
                            if tiles_order:
                                # The tiles add fma(0, w, acc) for inputs in
                                # the zero padding (j < j_lo, j >= j_hi): so
                                # does this, in one short scalar loop.
                                for j in range(n_j - (j_hi - j_lo)):
                                    a = at + (j if j < j_lo else j + j_hi - j_lo)
                                    acc[a] = simd.fma(zero, weight, acc[a])
                                for j in range(np.uint64(j_hi - j_lo)):
                                    a = np.uint64(at + j_lo) + j
                                    acc[a] = simd.fma(xf[np.uint64(x_row + j_lo - shift) + j],
                                                      weight, acc[a])
                            else:
                                for j in range(np.uint64(j_hi - j_lo)):
                                    acc[np.uint64(at + j_lo) + j] += (
                                        weight * xf[np.uint64(x_row + j_lo - shift) + j])
        first = row * o_w
        for ow in range(o_w):
            of[first + ow] = acc[ow % s_w * per_phase + ow // s_w] + bias[co]


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _planes_taps(acc, per_phase, padded, lead, w, ci, co_g, kd, kh, s_w, d_w, p_w, o_w):
    """:data:`PLANES`: the W taps of one input row (at ``padded[lead]``)."""
    k_w = w.shape[4]
    for kw in range(min(s_w, k_w)):
        phase = (kw * d_w - p_w) % s_w
        if phase >= o_w:
            continue
        at = np.uint64(phase * per_phase)
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
