"""Numba CPU kernels, all in the rank-3 channels-first form.

Ranks 1 and 2 reach these kernels as rank 3 with unit leading dims (a free
reshape), so one compiled kernel per dtype serves ranks 1-3. Every kernel
is a *gather*: a task owns output rows ``out[n, c, od, oh, :]``, writes
nothing else, and sums the taps that reach it in a fixed order, so
results are identical run to run and inserted zeros are never multiplied.

For a kernel tap ``kw`` the outputs ``ow = iw*s + kw*d - p`` form an
arithmetic progression over the input row, so the innermost loop runs over
a contiguous stretch of ``iw``.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH


@njit(inline="always")
def _tap_source(o, k, stride, dilation, pad, size):
    """Input index feeding output ``o`` through tap ``k``, or -1 if none."""
    t = o + pad - k * dilation
    if t < 0 or t % stride != 0:
        return -1
    i = t // stride
    return i if i < size else -1


@njit(inline="always")
def _tap_span(k, stride, dilation, pad, in_size, out_size):
    """Range [lo, hi) of input indices ``i`` whose output ``i*s + off`` exists."""
    off = k * dilation - pad
    lo = max(0, -(off // stride))
    hi = min(in_size, (out_size - 1 - off) // stride + 1)
    return off, lo, hi


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def _direct_row_range(x, w, bias, out, groups, stride, dilation, pad, first, last, acc):
    """Output rows ``first <= row < last`` (flat over N, C_out, OD, OH).

    A row is accumulated split by output phase, ``acc[r, j]`` for
    ``ow = j*s + r``: tap ``kw`` then adds a contiguous stretch of the input
    row to a contiguous stretch of one phase, a loop LLVM vectorises, and
    the phases are interleaved into the output row once at the end.
    """
    i_d, i_h, i_w = x.shape[2], x.shape[3], x.shape[4]
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    c_in_g = x.shape[1] // groups
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    for row in range(first, last):
        oh = row % o_h
        rest = row // o_h
        od = rest % o_d
        rest //= o_d
        co = rest % c_out
        n = rest // c_out
        g = co // c_out_g
        co_g = co - g * c_out_g
        acc[:] = 0
        for kd in range(k_d):
            i_dd = _tap_source(od, kd, s_d, d_d, p_d, i_d)
            if i_dd < 0:
                continue
            for kh in range(k_h):
                i_hh = _tap_source(oh, kh, s_h, d_h, p_h, i_h)
                if i_hh < 0:
                    continue
                for ci in range(g * c_in_g, (g + 1) * c_in_g):
                    xr = x[n, ci, i_dd, i_hh]
                    for kw in range(k_w):
                        wv = w[ci, co_g, kd, kh, kw]
                        off = kw * d_w - p_w
                        r = off % s_w
                        q = off // s_w
                        lo = max(0, -q)
                        hi = min(i_w, (o_w - r + s_w - 1) // s_w - q)
                        a = acc[r]
                        for iw in range(lo, hi):
                            a[iw + q] += wv * xr[iw]
        y = out[n, co, od, oh]
        b = bias[co]
        for r in range(min(s_w, o_w)):
            a = acc[r]
            for j in range((o_w - r + s_w - 1) // s_w):
                y[j * s_w + r] = a[j] + b


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def direct_rows(x, w, bias, out, groups, stride, dilation, pad, n_chunks):
    """Transposed convolution straight from ``x`` and ``w`` (few channels).

    x (N, C_in, D, H, W), w (C_in, C_out/groups, KD, KH, KW), bias (C_out,),
    out (N, C_out, OD, OH, OW); stride, dilation, pad: 3-tuples (pad is the
    before-padding; the after-padding is implied by out's shape). The
    output rows are shared out in ``n_chunks`` parallel chunks, each with
    its own phase buffer.
    """
    rows = out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3]
    s_w, o_w = stride[2], out.shape[4]
    for chunk in prange(n_chunks):
        acc = np.empty((s_w, (o_w + s_w - 1) // s_w), dtype=out.dtype)
        _direct_row_range(x, w, bias, out, groups, stride, dilation, pad,
                          chunk * rows // n_chunks, (chunk + 1) * rows // n_chunks, acc)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def direct_rows_serial(x, w, bias, out, groups, stride, dilation, pad):
    """:func:`direct_rows` on the calling thread: for calls too small to
    repay waking a thread pool (tens of microseconds on a busy machine)."""
    rows = out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3]
    s_w, o_w = stride[2], out.shape[4]
    acc = np.empty((s_w, (o_w + s_w - 1) // s_w), dtype=out.dtype)
    _direct_row_range(x, w, bias, out, groups, stride, dilation, pad, 0, rows, acc)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def col2im(cols, bias, out, stride, dilation, pad):
    """Fold GEMM columns into one block of output channels of one image.

    cols (C, KD, KH, KW, D, H, W) holds ``w[ci, co, k] * x[ci, i]`` already
    summed over the input channels; bias (C,); out (C, OD, OH, OW). Serial
    and ``nogil``: the GEMM driver runs one call per task in its own
    threads, each task owning its output block.
    """
    c_out, k_d, k_h, k_w, i_d, i_h, i_w = cols.shape
    o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3]
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    for co in range(c_out):
        for od in range(o_d):
            for oh in range(o_h):
                y = out[co, od, oh]
                y[:] = bias[co]
                for kd in range(k_d):
                    i_dd = _tap_source(od, kd, s_d, d_d, p_d, i_d)
                    if i_dd < 0:
                        continue
                    for kh in range(k_h):
                        i_hh = _tap_source(oh, kh, s_h, d_h, p_h, i_h)
                        if i_hh < 0:
                            continue
                        for kw in range(k_w):
                            off, lo, hi = _tap_span(kw, s_w, d_w, p_w, i_w, o_w)
                            c = cols[co, kd, kh, kw, i_dd, i_hh]
                            for iw in range(lo, hi):
                                y[iw * s_w + off] += c[iw]
