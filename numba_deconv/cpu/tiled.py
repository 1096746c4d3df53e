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

The products run as register tiles: 4 output channels x 4 (channel, tap)
pairs per sweep over a stretch of ``sub`` (at most ``PITCH``) accumulator
positions, so each loaded input vector feeds 4 multiply-adds and each
accumulator load/store 4 (an axpy does 1 and 1), with the stretch small
enough to stay in L1. On small channel counts this beats BLAS, whose
per-image products are too thin to run at speed and whose columns must then
be folded (col2im).

Zero padding adds ``0 * w``, which is 0 only for finite weights: the
driver checks, like for the plane kernel.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH
from .kernels import _interleave

#: Pitch of the accumulator rows, the most positions one sweep covers. A
#: constant on purpose: with it LLVM can tell the 4 rows of a tile apart and
#: vectorise (a run-time pitch made the tile 5x slower).
PITCH = 528


def phase_tables(kernel, stride, dilation, pad, out_spatial):
    """Geometry of the phases of a rank-3 problem (all tuples of 3).

    Returns ``(pitch, shift_max, phases, taps)``:

    - ``pitch``: ``U`` per dim, the padded input's and accumulators' dims;
    - ``shift_max``: ``delta_max`` per dim (the input lies at
      ``xp[delta_max + i]``);
    - ``phases``: int64 ``(n_phases, 6)``: ``r`` and ``Q_r`` (outputs in the
      phase) per dim;
    - ``taps``: per phase, a list of ``(kd, kh, kw, offset)``.
    """
    shifts = [[(k * d - p) // s for k in range(kk)]
              for kk, s, d, p in zip(kernel, stride, dilation, pad)]
    residues = [[(k * d - p) % s for k in range(kk)]
                for kk, s, d, p in zip(kernel, stride, dilation, pad)]
    q_max = [-(-o // s) for o, s in zip(out_spatial, stride)]
    shift_max = tuple(max(v) for v in shifts)
    pitch = tuple(q + max(v) - min(v) for q, v in zip(q_max, shifts))
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
                     + shift_max[2] - shifts[2][kw])
                    for kd in range(kernel[0]) if residues[0][kd] == rd
                    for kh in range(kernel[1]) if residues[1][kh] == rh
                    for kw in range(kernel[2]) if residues[2][kw] == rw])
    return pitch, shift_max, np.array(phases, dtype=np.int64), taps


def weight_tables(w, groups, taps):
    """Per phase, the weights as ``(groups, n_phases, K, C_out/groups)``
    with ``K = C_in/groups * taps`` in (channel, tap) order (zero rows pad
    phases with fewer taps), and the taps' flat offsets ``(n_phases, T)``."""
    c_in, c_out_g = w.shape[:2]
    c_in_g = c_in // groups
    most = max(len(t) for t in taps)
    table = np.zeros((groups, len(taps), c_in_g * most, c_out_g), dtype=w.dtype)
    offsets = np.zeros((len(taps), max(most, 1)), dtype=np.int64)
    for ph, phase_taps in enumerate(taps):
        if not phase_taps:
            continue
        kd, kh, kw, off = (np.array(v) for v in zip(*phase_taps))
        picked = w[:, :, kd, kh, kw]  # (C_in, C_out_g, T)
        picked = picked.reshape(groups, c_in_g, c_out_g, len(off)).transpose(0, 1, 3, 2)
        table[:, ph, :c_in_g * len(off)] = picked.reshape(groups, -1, c_out_g)
        offsets[ph, :len(off)] = off
    return table, offsets


@njit(inline="always")
def _tile4x4(acc, a0, stride_a, xw, s0, s1, s2, s3, length, wt, k, co):
    """acc rows co..co+3 (from a0, pitch stride_a) += the 4x4 block of
    weights ``wt[k..k+3, co..co+3]`` times input stretches s0..s3."""
    w00, w01, w02, w03 = wt[k, co], wt[k, co + 1], wt[k, co + 2], wt[k, co + 3]
    w10, w11, w12, w13 = wt[k + 1, co], wt[k + 1, co + 1], wt[k + 1, co + 2], wt[k + 1, co + 3]
    w20, w21, w22, w23 = wt[k + 2, co], wt[k + 2, co + 1], wt[k + 2, co + 2], wt[k + 2, co + 3]
    w30, w31, w32, w33 = wt[k + 3, co], wt[k + 3, co + 1], wt[k + 3, co + 2], wt[k + 3, co + 3]
    c0 = np.uint64(a0)
    c1 = c0 + np.uint64(stride_a)
    c2 = c1 + np.uint64(stride_a)
    c3 = c2 + np.uint64(stride_a)
    b0, b1, b2, b3 = np.uint64(s0), np.uint64(s1), np.uint64(s2), np.uint64(s3)
    for t in range(np.uint64(length)):
        v0 = xw[b0 + t]
        v1 = xw[b1 + t]
        v2 = xw[b2 + t]
        v3 = xw[b3 + t]
        # Summed from the accumulator on, so each term is one FMA.
        acc[c0 + t] = acc[c0 + t] + w00 * v0 + w10 * v1 + w20 * v2 + w30 * v3
        acc[c1 + t] = acc[c1 + t] + w01 * v0 + w11 * v1 + w21 * v2 + w31 * v3
        acc[c2 + t] = acc[c2 + t] + w02 * v0 + w12 * v1 + w22 * v2 + w32 * v3
        acc[c3 + t] = acc[c3 + t] + w03 * v0 + w13 * v1 + w23 * v2 + w33 * v3


@njit(inline="always")
def _tile1x4(acc, a0, xw, s0, s1, s2, s3, length, wt, k, co):
    """One accumulator row += 4 (channel, tap) pairs."""
    w0, w1, w2, w3 = wt[k, co], wt[k + 1, co], wt[k + 2, co], wt[k + 3, co]
    c0 = np.uint64(a0)
    b0, b1, b2, b3 = np.uint64(s0), np.uint64(s1), np.uint64(s2), np.uint64(s3)
    for t in range(np.uint64(length)):
        acc[c0 + t] = (acc[c0 + t] + w0 * xw[b0 + t] + w1 * xw[b1 + t] + w2 * xw[b2 + t]
                       + w3 * xw[b3 + t])


@njit(inline="always")
def _tile4x1(acc, a0, stride_a, xw, s0, length, wt, k, co):
    """4 accumulator rows += one (channel, tap) pair."""
    w0, w1, w2, w3 = wt[k, co], wt[k, co + 1], wt[k, co + 2], wt[k, co + 3]
    c0 = np.uint64(a0)
    c1 = c0 + np.uint64(stride_a)
    c2 = c1 + np.uint64(stride_a)
    c3 = c2 + np.uint64(stride_a)
    b0 = np.uint64(s0)
    for t in range(np.uint64(length)):
        v = xw[b0 + t]
        acc[c0 + t] += w0 * v
        acc[c1 + t] += w1 * v
        acc[c2 + t] += w2 * v
        acc[c3 + t] += w3 * v


@njit(inline="always")
def _source(k, n_taps, offsets, ph, win_len, start):
    """Where the input stretch of (channel, tap) pair ``k`` starts."""
    ci = k // n_taps
    return ci * win_len + offsets[ph, k - ci * n_taps] + start


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _phase_products(acc, xw, win_len, start, length, wt, offsets, ph, n_taps, c_in_g):
    """acc (C_out_g rows of pitch PITCH) = the phase's products for
    ``length <= PITCH`` positions from window position ``start``.

    The (channel, tap) blocks are the outer loop: a block's 4 input
    stretches are read from L2 once and then stay in L1 while every block
    of output channels uses them; all accumulator rows stay in L1 too.
    """
    c_out_g = wt.shape[1]
    c_tiled = c_out_g - c_out_g % 4
    k_total = c_in_g * n_taps
    k_tiled = k_total - k_total % 4
    acc[:] = 0
    for k in range(0, k_tiled, 4):
        s0 = _source(k, n_taps, offsets, ph, win_len, start)
        s1 = _source(k + 1, n_taps, offsets, ph, win_len, start)
        s2 = _source(k + 2, n_taps, offsets, ph, win_len, start)
        s3 = _source(k + 3, n_taps, offsets, ph, win_len, start)
        for co in range(0, c_tiled, 4):
            _tile4x4(acc, co * PITCH, PITCH, xw, s0, s1, s2, s3, length, wt, k, co)
        for co in range(c_tiled, c_out_g):
            _tile1x4(acc, co * PITCH, xw, s0, s1, s2, s3, length, wt, k, co)
    for k in range(k_tiled, k_total):
        s0 = _source(k, n_taps, offsets, ph, win_len, start)
        for co in range(0, c_tiled, 4):
            _tile4x1(acc, co * PITCH, PITCH, xw, s0, length, wt, k, co)
        for co in range(c_tiled, c_out_g):
            a0 = np.uint64(co * PITCH)
            b0 = np.uint64(s0)
            wk = wt[k, co]
            for t in range(np.uint64(length)):
                acc[a0 + t] += wk * xw[b0 + t]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def direct_tiled(x, weights, offsets, tap_counts, phases, bias, out, pitch, shift_max,
                 stride, chunks_per_image, sub):
    """Transposed convolution by phase planes and register tiles.

    x (N, C_in, D, H, W), out (N, C_out, OD, OH, OW), bias (C_out,), all
    C-contiguous; ``weights``, ``offsets`` from :func:`weight_tables`,
    ``tap_counts`` (n_phases,), ``phases``/``pitch``/``shift_max`` from
    :func:`phase_tables`. A task owns one stretch of accumulator positions
    of one image and group, for every phase (so the outputs it writes are
    its own): it copies the zero-padded input window it reads, then per
    phase and per ``sub`` positions runs the tiles and scatters the sums
    (plus bias) to the output.
    """
    n_batch, c_in, i_d, i_h, i_w = x.shape
    groups, n_phases, _, c_out_g = weights.shape
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    c_in_g = c_in // groups
    u_d, u_h, u_w = pitch
    s_d, s_h, s_w = stride
    span = (-(-o_d // s_d)) * u_h * u_w  # accumulator positions per phase
    halo = 0
    for ph in range(n_phases):
        for t in range(tap_counts[ph]):
            halo = max(halo, offsets[ph, t])
    chunk = -(-span // chunks_per_image)
    xf, of = x.reshape(-1), out.reshape(-1)
    tasks = n_batch * groups * chunks_per_image
    for task in prange(tasks):
        c = task % chunks_per_image
        g = (task // chunks_per_image) % groups
        n = task // (chunks_per_image * groups)
        p0 = c * chunk
        p1 = min(p0 + chunk, span)
        if p1 <= p0:
            continue
        win_len = p1 - p0 + halo
        # The window: xp[p0 : p0 + win_len] of each input channel.
        xw = np.zeros(c_in_g * win_len, dtype=x.dtype)
        for row in range(p0 // u_w, (p0 + win_len - 1) // u_w + 1):
            i_hh = row % u_h - shift_max[1]
            i_dd = row // u_h - shift_max[0]
            if i_dd < 0 or i_dd >= i_d or i_hh < 0 or i_hh >= i_h:
                continue
            # xp positions of this input row, clipped to the row (inputs past
            # it reach no output) and to the window.
            lo = max(row * u_w + max(shift_max[2], 0), p0)
            hi = min(row * u_w + min(shift_max[2] + i_w, u_w), p0 + win_len)
            if hi <= lo:
                continue
            iw0 = lo - row * u_w - shift_max[2]
            for ci in range(c_in_g):
                src = np.uint64(((((n * c_in + g * c_in_g + ci) * i_d + i_dd) * i_h + i_hh)
                                 * i_w + iw0))
                dst = np.uint64(ci * win_len + lo - p0)
                for t in range(np.uint64(hi - lo)):
                    xw[dst + t] = xf[src + t]
        # One accumulator per W phase: the phases of a row are computed
        # side by side and interleaved into it in one contiguous pass.
        block = c_out_g * PITCH
        acc = np.empty(s_w * block, dtype=out.dtype)
        for ph_row in range(n_phases // s_w):
            first_ph = ph_row * s_w
            r_d, r_h = phases[first_ph, 0], phases[first_ph, 1]
            q_d, q_h = phases[first_ph, 3], phases[first_ph, 4]
            for s0 in range(p0, p1, sub):
                length = min(sub, p1 - s0)
                for r_w in range(s_w):
                    ph = first_ph + r_w
                    _phase_products(acc[r_w * block:(r_w + 1) * block], xw, win_len,
                                    s0 - p0, length, weights[g, ph], offsets, ph,
                                    tap_counts[ph], c_in_g)
                # Accumulator position P = (jd*u_h + jh)*u_w + jw of phase
                # r_w is output (jd*s_d + r_d, jh*s_h + r_h, jw*s_w + r_w).
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
                    a_first = row * u_w + jw_lo - s0
                    for co in range(c_out_g):
                        oc = g * c_out_g + co
                        o_row = (((n * c_out + oc) * o_d + j_d * s_d + r_d) * o_h
                                 + j_h * s_h + r_h) * o_w
                        _interleave(acc, co * PITCH + a_first, block, s_w, bias[oc], of,
                                    o_row + ow_lo, ow_hi - ow_lo)
