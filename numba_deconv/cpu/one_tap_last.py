"""``one_tap_last``: channels-last calls whose every output phase has at most one tap.

Where the kernel is no larger than the stride allows (1x1 kernels, k3 s3,
k2 s2 d3: along each dim, ``k <= s / gcd(s, d)``), each output position
takes one tap or none, and its sums are a dot product over the input
channels of one input position. The phase tiles would compute them as rows
of positions per output channel and transpose every vector square of
sums into the channels-last output; with few input channels an output
that was all transposes (4 -> 144 channels 1x1: the scatter 31 % of the
call, 1.35x the channels-first time). Here the sums run along the output
channels, which lie side by side in the output, so nothing is transposed:
register tiles of 4 positions x 1-3 vectors of channels (8 positions where
there are one or two vectors), the input channel's value broadcast.

Each output gets the phase tiles' terms in their order -- ``fma(x, w,
acc)`` over the input channels from ``+0.0``, the bias added last --
so the same bits (:data:`.driver.ONE_TAP_LAST`); an output whose tap
reads the zero padding, or that no tap reaches, is ``bias + 0.0``, as
the tiles' zero sums give.
"""

import math

import numpy as np
from numba import njit

from .. import config
from ..config import FASTMATH
from . import atomics, simd
from .depthwise_last import row_stretch

#: Positions of a register tile (consecutive outputs of one W phase).
TILE_POSITIONS = 4
#: Most vectors of output channels of a register tile.
TILE_VECTORS = 3


def one_tap_per_phase(kernel, stride, dilation) -> bool:
    """Whether every output phase of a call has at most one tap: along each
    dim the kernel's taps fall on distinct phases (``k <= s / gcd(s, d)``)."""
    return all(k <= s // math.gcd(s, d) for k, s, d in zip(kernel, stride, dilation))


def takes_one_tap_last(dtype, c_in_g, c_out_g, kernel, stride, dilation) -> bool:
    """Whether :func:`one_tap_last` runs a channels-last call (real
    ``dtype``, ``c_in_g`` input and ``c_out_g`` output channels a group,
    the call's ``kernel``, ``stride``, ``dilation``) of the phase tiles:
    one tap per output phase, a vector of output channels a group at least,
    and few products an output (``config.ONE_TAP_LAST_MAX_MULTIPLY_ADDS``)."""
    dtype = np.dtype(dtype)
    return (dtype.kind == "f" and one_tap_per_phase(kernel, stride, dilation)
            and c_out_g >= simd.VECTOR_BYTES // dtype.itemsize
            and c_in_g * math.prod(kernel)
            <= config.ONE_TAP_LAST_MAX_MULTIPLY_ADDS * math.prod(stride))


def laid_out_weights(w, groups) -> tuple:
    """``(w_t, finite)``: ``w`` (C_in, C_out / groups, KD, KH, KW) as
    :func:`one_tap_last` reads it, (KD, KH, KW, C_in / groups, groups * Q):
    for each tap and input channel of a group the output channels of every
    group side by side, each group's in whole vectors of this CPU (``Q``,
    zeros past its channels: the tiles load whole vectors and store only
    the channels); and whether every weight is finite (the tiles' sums are
    exact only then). In one pass (NumPy's transposing copy and test took
    25 us of a 200 us call)."""
    lanes = simd.VECTOR_BYTES // w.itemsize
    c_in, c_out_g = w.shape[:2]
    pitch = -(-c_out_g // lanes) * lanes
    w_t = np.zeros(w.shape[2:] + (c_in // groups, groups * pitch), dtype=w.dtype)
    return w_t, by_tap(w, groups, w_t) == 0


@njit(nogil=True, cache=True)
def by_tap(w, groups, w_t):
    """``w_t`` from ``w`` as :func:`laid_out_weights` lays it out (its
    padding left as it is); returns how many weights are not finite."""
    c_in, c_out_g, k_d, k_h, k_w = w.shape
    c_in_g = c_in // groups
    pitch = w_t.shape[4] // groups
    bad = 0
    for ci in range(c_in):
        g, ci_g = ci // c_in_g, ci % c_in_g
        for kd in range(k_d):
            for kh in range(k_h):
                for kw in range(k_w):
                    for co in range(c_out_g):
                        value = w[ci, co, kd, kh, kw]
                        w_t[kd, kh, kw, ci_g, g * pitch + co] = value
                        bad += not np.isfinite(value)
    return bad


def one_tap_split(x_shape, out_shape, kernel, stride, pad, threads) -> tuple:
    """How :func:`one_tap_last` runs a call with channels-last ``x_shape``
    and ``out_shape`` (N, D, H, W, C) on ``threads`` threads: ``(x_shape,
    out_shape, stride, parts, row_block)``. Output rows a task (up to 8)
    and stretches a row (of a tile of positions a phase at least) as make
    ``4 * TILED_TASKS_PER_THREAD`` tasks a thread: no task copies anything,
    so short ones cost only their claim (one 1-D call of 3 rows, 2 against
    11 stretches a row: 116 against 98 us). Where output position i reads
    input position i (1x1, stride 1, no padding), the batch is one row:
    rows of a few positions left tiles of one or two (a 3-D call's 6-wide
    rows 1.2x slower)."""
    if x_shape[1:-1] == out_shape[1:-1] and math.prod(kernel) == 1 and not any(pad):
        positions = math.prod(x_shape[:-1])
        x_shape, out_shape = (1, 1, 1, positions, x_shape[-1]), (1, 1, 1, positions,
                                                                 out_shape[-1])
        stride = (1, 1, 1)  # (a dim of one position may have any)
    rows = math.prod(out_shape[:3])
    per_phase = -(-out_shape[3] // stride[2])
    wanted = 4 * config.TILED_TASKS_PER_THREAD * threads
    parts = max(1, min(-(-wanted // rows), per_phase // TILE_POSITIONS))
    row_block = max(1, min(8, rows // wanted))
    return x_shape, out_shape, stride, parts, row_block


def _spell_tile(positions, vectors):
    """A register tile of ``positions`` x ``vectors`` sums, compiled inline:
    for ``p < positions`` and the channels ``c`` of vector ``v < vectors``
    (the last stores ``last`` lanes; every vector of weights is whole)::

        of[o_at + p*o_step + c] = bias[b_at + c]
            + sum over k < k_total of xf[x_at + p*x_step + k] * wf[w_at + k*w_step + c]

    summed from zero in the order of ``k``, each product an FMA. Spelled
    out as source so that the sums are plain local values (registers)."""
    name = f"_tile{positions}x{vectors}"
    last = vectors - 1
    lines = [f"def {name}(xf, x_at, x_step, wf, w_at, w_step, k_total, bias, b_at, of, o_at, "
             "o_step, last):",
             "    lanes = lanes_of(of)"]
    acc = {(p, v): f"a{p}_{v}" for p in range(positions) for v in range(vectors)}
    lines.append("    " + " = ".join(acc.values()) + " = zeros(of)")
    lines.append("    for k in range(k_total):")
    lines.append("        w_k = w_at + k * w_step")
    lines += [f"        w{v} = load(wf, w_k + {v} * lanes)" for v in range(vectors)]
    for p in range(positions):
        lines.append(f"        s = xf[np.uint64(x_at + {p} * x_step) + np.uint64(k)]")
        lines += [f"        {acc[p, v]} = fma(w{v}, s, {acc[p, v]})" for v in range(vectors)]
    for v in range(vectors):
        load = (f"load_part(bias, b_at + {v} * lanes, last)" if v == last
                else f"load(bias, b_at + {v} * lanes)")
        lines.append(f"    b{v} = {load}")
    for p in range(positions):
        for v in range(vectors):
            at = f"o_at + {p} * o_step + {v} * lanes"
            total = f"add({acc[p, v]}, b{v})"
            lines.append(f"    store_part(of, {at}, {total}, last)" if v == last
                         else f"    store(of, {at}, {total})")
    namespace = {"np": np, "lanes_of": simd.lanes, "zeros": simd.zeros, "load": simd.load,
                 "load_part": simd.load_part, "fma": simd.fma, "add": simd.add,
                 "store": simd.store, "store_part": simd.store_part}
    exec("\n".join(lines), namespace)
    return njit(inline="always")(namespace[name])


#: The register tiles, (positions, vectors): 4 x 3 the main one, 8 x 1 and
#: 8 x 2 where there are one or two vectors of channels (4 x 1 made 4
#: chains of dependent multiply-adds, too few to hide their latency), the
#: others for what is left.
_SHAPES = ((8, 1), (8, 2), (4, 1), (4, 2), (4, 3), (2, 1), (2, 2), (2, 3), (1, 1), (1, 2),
           (1, 3))


def _spell_any_tile():
    """``_tile(positions, vectors, ...)``: the tile of that shape of
    :data:`_SHAPES` (:func:`_spell_tile`, the same arguments), compiled
    inline."""
    args = "xf, x_at, x_step, wf, w_at, w_step, k_total, bias, b_at, of, o_at, o_step, last"
    lines = [f"def _tile(positions, vectors, {args}):"]
    for i, (p, v) in enumerate(_SHAPES):
        lines += [f"    {'if' if i == 0 else 'elif'} positions == {p} and vectors == {v}:",
                  f"        tile{p}x{v}({args})"]
    namespace = {f"tile{p}x{v}": _spell_tile(p, v) for p, v in _SHAPES}
    exec("\n".join(lines), namespace)
    return njit(inline="always")(namespace["_tile"])


_tile = _spell_any_tile()


@njit(inline="always")
def _tiles(xf, x_at, x_step, wf, w_at, w_step, k_total, bias, b_at, of, o_at, o_step,
           positions, channels):
    """The sums of ``positions`` outputs (``o_step`` apart, their inputs
    ``x_step`` apart) for ``channels`` output channels side by side, in
    the tiles of :data:`_SHAPES`: 4 positions x 3 vectors, or 8 x all
    where there are one or two vectors, then what is left of each."""
    lanes = simd.lanes(of)
    vectors = -(-channels // lanes)
    last = channels - (vectors - 1) * lanes  # lanes of the last vector
    p = 0
    while p < positions:
        left = positions - p
        tile = (2 * TILE_POSITIONS if vectors <= 2 and left >= 2 * TILE_POSITIONS
                else TILE_POSITIONS if left >= TILE_POSITIONS else 2 if left >= 2 else 1)
        v = 0
        while v < vectors:
            count = min(vectors - v, TILE_VECTORS)
            _tile(tile, count, xf, x_at + p * x_step, x_step, wf, w_at + v * lanes, w_step,
                  k_total, bias, b_at + v * lanes, of, o_at + p * o_step + v * lanes, o_step,
                  last if v + count == vectors else lanes)
            v += count
        p += tile


@njit(inline="always")
def _bias_only(of, o_at, o_step, positions, bias, c_out):
    """Outputs that no tap reaches, or whose tap reads the zero padding:
    ``bias + 0.0``, as the tiles' sums of zero products give (a bias of
    -0.0 gives +0.0)."""
    for p in range(positions):
        at = np.uint64(o_at + p * o_step)
        for c in range(np.uint64(c_out)):
            of[at + c] = bias[c] + 0.0


@njit(inline="always")
def _tap(o, p, k, s, d):
    """The one tap of kernel length ``k`` that reaches output ``o`` along a
    dim (stride ``s``, dilation ``d``, padding ``p``), and the input it
    reads there: ``(tap, input)``, ``tap`` -1 where none does."""
    for t in range(k):
        at = o + p - t * d
        if at % s == 0:
            return t, at // s
    return -1, 0


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def one_tap_last(x, w_t, bias, out, stride, dilation, pad, parts, row_block, claimed, cancel):
    """A call whose every output phase has at most one tap
    (:func:`one_tap_per_phase`), on channels-last data, for finite
    weights, with the phase tiles' sums.

    x (N, D, H, W, C_in), out (N, OD, OH, OW, C_out), ``w_t`` (KD, KH, KW,
    C_in / groups, groups * Q) from :func:`laid_out_weights`, bias (C_out,), all
    C-contiguous. A task kernel (:func:`.launch.parallel`), a task for
    each of ``parts`` stretches of ``row_block`` output rows ``(n, od,
    oh)`` (:func:`one_tap_split`). Along
    a row, each W phase's outputs in the stretch read consecutive inputs
    through the phase's tap: they go in register tiles (:func:`_tiles`),
    group by group, every output channel of a position side by side.
    """
    n_batch, i_d, i_h, i_w, c_in = x.shape
    o_d, o_h, o_w, c_out = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    k_d, k_h, k_w, c_in_g, w_pitch = w_t.shape
    groups = c_in // c_in_g
    c_out_g = c_out // groups
    group_pitch = w_pitch // groups
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    xf, wf, of = x.reshape(-1), w_t.reshape(-1), out.reshape(-1)
    per_phase = -(-o_w // s_w)
    row_blocks = -(-o_h // row_block)
    tasks = n_batch * o_d * row_blocks * parts
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, od, oh_first, j_first, j_end = row_stretch(task, parts, per_phase, row_blocks,
                                                      row_block, o_d)
        kd, id_ = _tap(od, p_d, k_d, s_d, d_d)
        for oh in range(oh_first, min(oh_first + row_block, o_h)):
            kh, ih = _tap(oh, p_h, k_h, s_h, d_h)
            row_in = kd >= 0 and kh >= 0 and 0 <= id_ < i_d and 0 <= ih < i_h
            x_row = ((n * i_d + id_) * i_h + ih) * i_w
            o_row = ((n * o_d + od) * o_h + oh) * o_w
            for r in range(min(s_w, o_w)):
                # Outputs j*s_w + r of the phase, j in [j_lo, j_hi).
                j_lo, j_hi = j_first, min(j_end, (o_w - r + s_w - 1) // s_w)
                if j_hi <= j_lo:
                    continue
                o_at, o_step = (o_row + j_lo * s_w + r) * c_out, s_w * c_out
                kw, iw = _tap(r, p_w, k_w, s_w, d_w)
                if not row_in or kw < 0:
                    _bias_only(of, o_at, o_step, j_hi - j_lo, bias, c_out)
                    continue
                # Output j reads input iw + j; those outside the input get
                # the bias alone.
                j_in_lo = min(max(j_lo, -iw), j_hi)
                j_in_hi = max(min(j_hi, i_w - iw), j_in_lo)
                _bias_only(of, o_at, o_step, j_in_lo - j_lo, bias, c_out)
                _bias_only(of, o_at + (j_in_hi - j_lo) * o_step, o_step, j_hi - j_in_hi, bias,
                           c_out)
                if j_in_hi == j_in_lo:
                    continue
                w_tap = ((kd * k_h + kh) * k_w + kw) * c_in_g * w_pitch
                o_in = o_at + (j_in_lo - j_lo) * o_step
                for g in range(groups):
                    _tiles(xf, (x_row + iw + j_in_lo) * c_in + g * c_in_g, c_in, wf,
                           w_tap + g * group_pitch, w_pitch, c_in_g, bias, g * c_out_g, of,
                           o_in + g * c_out_g, o_step, j_in_hi - j_in_lo, c_out_g)
