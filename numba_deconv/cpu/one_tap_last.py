"""``one_tap_last``: channels-last calls with one tap per output phase, or a few.

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
there are one, two or four vectors), the input channel's value broadcast.
The kernel is named for that case; calls whose phases have a few taps and
few input channels (2 -> 51 k3, 3 -> 16 k7 s2 a group) go the same way,
each output summing over its input channels and, for each, the phase's
taps that reach the input.

Each output gets the phase tiles' terms in their order -- ``fma(x, w,
acc)`` over the input channels and each channel's taps in kernel order,
from ``+0.0``, the bias added last -- so the same bits
(:data:`.driver.ONE_TAP_LAST`). The tiles' products through taps that read
the zero padding add zeros to sums that are never ``-0.0``, so leaving
them out changes no bit; an output that no tap reaches is ``bias + 0.0``,
as the tiles' zero sums give.
"""

import math

import numpy as np
from numba import njit

from .. import config
from .._outputs import empty_aligned
from ..config import FASTMATH
from . import atomics, simd
from .depthwise_last import row_stretch
from .transpose import channels_to_rows

#: Positions of a register tile (consecutive outputs of one W phase).
TILE_POSITIONS = 4
#: Most vectors of output channels of a register tile.
TILE_VECTORS = 3


def one_tap_per_phase(kernel, stride, dilation) -> bool:
    """Whether every output phase of a call has at most one tap: along each
    dim the kernel's taps fall on distinct phases (``k <= s / gcd(s, d)``)."""
    return all(k <= s // math.gcd(s, d) for k, s, d in zip(kernel, stride, dilation))


def edge_outputs(kernel, stride, dilation) -> int:
    """How many outputs of a W phase (a dim's ``kernel``, ``stride`` and
    ``dilation``) lie where only some of its taps reach the input: the
    phase's taps, ``k / (s / gcd(s, d))`` of them, span ``d / gcd(s, d)``
    inputs each."""
    step = math.gcd(stride, dilation)
    return (-(-kernel // (stride // step)) - 1) * (dilation // step)


def takes_one_tap_last(dtype, c_in_g, c_out_g, kernel, stride, dilation, in_width) -> bool:
    """Whether :func:`one_tap_last` runs a channels-last call (real
    ``dtype``, ``c_in_g`` input and ``c_out_g`` output channels a group,
    the call's ``kernel``, ``stride``, ``dilation``, its input ``in_width``
    positions along W) of the phase tiles: a vector of output channels a
    group at least; few products an output
    (``config.ONE_TAP_LAST_MAX_MULTIPLY_ADDS``, or
    ``config.FEW_TAPS_LAST_MAX_MULTIPLY_ADDS`` where a phase has several
    taps); and few outputs a row that only some taps reach, which it sums
    one at a time (``config.ONE_TAP_LAST_MIN_WIDTH_PER_EDGE``)."""
    dtype = np.dtype(dtype)
    # (The cheap test first: it is asked on every channels-last call.)
    if dtype.kind != "f" or c_out_g < simd.VECTOR_BYTES // dtype.itemsize:
        return False
    most = (config.ONE_TAP_LAST_MAX_MULTIPLY_ADDS if one_tap_per_phase(kernel, stride, dilation)
            else config.FEW_TAPS_LAST_MAX_MULTIPLY_ADDS)
    return (c_in_g * math.prod(kernel) <= most * math.prod(stride)
            and edge_outputs(kernel[-1], stride[-1], dilation[-1])
            * config.ONE_TAP_LAST_MIN_WIDTH_PER_EDGE <= in_width)


def laid_out_weights(w, groups) -> tuple:
    """``(w_t, finite)``: ``w`` (C_in, C_out / groups, KD, KH, KW) as
    :func:`one_tap_last` reads it, (KD, KH, KW, C_in / groups, groups * Q):
    for each tap and input channel of a group the output channels of every
    group side by side, each group's in whole vectors of this CPU (``Q``,
    zeros past its channels: the tiles load whole vectors and store only
    the channels), from a cache line; and whether every weight is finite
    (the tiles' sums are exact only then). Compiled (NumPy's transposing
    copy and test took 25 us of a 200 us call); only the padding is
    cleared first."""
    lanes = simd.VECTOR_BYTES // w.itemsize
    c_in, c_out_g = w.shape[:2]
    pitch = -(-c_out_g // lanes) * lanes
    w_t = empty_aligned(w.shape[2:] + (c_in // groups, groups, pitch), w.dtype)
    w_t[..., c_out_g:] = 0
    w_t = w_t.reshape(w.shape[2:] + (c_in // groups, groups * pitch))
    return w_t, by_tap(w, groups, w_t) == 0


@njit(nogil=True, cache=True)
def by_tap(w, groups, w_t):
    """``w_t`` from ``w`` as :func:`laid_out_weights` lays it out (its
    padding left as it is); returns how many weights are not finite. Each
    input channel's (output channel, tap) matrix goes over in vectors
    (:func:`.transpose.channels_to_rows`): element by element, the reads
    a tap count apart, the copy took 240 us of 31 x 399 3x3 weights (a
    third of a 670 us channels-last call), 47 us this way; 12 us instead
    of 49 for 78 x 515 1x1 float64 weights (a copy)."""
    c_in, c_out_g, k_d, k_h, k_w = w.shape
    c_in_g = c_in // groups
    pitch = w_t.shape[4] // groups
    taps = k_d * k_h * k_w
    wf, wt = w.reshape(-1), w_t.reshape(-1)
    for ci in range(c_in):
        g, ci_g = ci // c_in_g, ci % c_in_g
        channels_to_rows(wf, ci * c_out_g * taps, taps, wt, (ci_g * groups + g) * pitch,
                         c_in_g * groups * pitch, c_out_g, taps)
    bad = 0
    for i in range(wf.size):  # (x - x is NaN for inf and NaN alone)
        bad += wf[i] - wf[i] != 0
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
            + sum over ci < c_in_g, a < taps[0], b < taps[1], m < taps[2] of
                xf[x_at + p*x_step + ci + a*x_tap[0] + b*x_tap[1] + m*x_tap[2]]
                * wf[w_at + ci*w_step + a*w_tap[0] + b*w_tap[1] + m*w_tap[2] + c]

    summed from zero in that order (channel by channel, each channel's taps
    in kernel order), each product an FMA. Spelled out as source so that
    the sums are plain local values (registers)."""
    name = f"_tile{positions}x{vectors}"
    last = vectors - 1
    lines = [f"def {name}(xf, x_at, x_step, x_tap, wf, w_at, w_step, w_tap, c_in_g, taps, bias, "
             "b_at, of, o_at, o_step, last):",
             "    lanes = lanes_of(of)"]
    acc = {(p, v): f"a{p}_{v}" for p in range(positions) for v in range(vectors)}
    lines.append("    " + " = ".join(acc.values()) + " = zeros(of)")
    # One tap: channel after channel. More: one loop over the pairs
    # (channel, a, b, m), the next pair's place carried along (nested
    # loops of one or two passes each ran at a quarter of the speed, and
    # the carries made the one-tap sums 1.1-1.5x slower).
    lines += ["    n_a, n_b, n_m = taps",
              "    pairs = c_in_g * n_a * n_b * n_m",
              "    if pairs == c_in_g:",
              "        for k in range(c_in_g):",
              "            w_k = w_at + k * w_step"]
    fmas = [f"w{v} = load(wf, w_k + {v} * lanes)" for v in range(vectors)]
    for p in range(positions):
        fmas.append(f"s = xf[np.uint64(x_k + {p} * x_step)]")
        fmas += [f"{acc[p, v]} = fma(w{v}, s, {acc[p, v]})" for v in range(vectors)]
    lines.append("            x_k = x_at + k")
    lines += [" " * 12 + line for line in fmas]
    lines += ["    else:",
              "        x_m, w_m = x_tap[2], w_tap[2]",
              "        x_bm, w_bm = x_tap[1] - n_m * x_tap[2], w_tap[1] - n_m * w_tap[2]",
              "        x_ab, w_ab = x_tap[0] - n_b * x_tap[1], w_tap[0] - n_b * w_tap[1]",
              "        x_ca, w_ca = 1 - n_a * x_tap[0], w_step - n_a * w_tap[0]",
              "        x_k, w_k = x_at, w_at",
              "        a = b = m = 0",
              "        for k in range(pairs):"]
    lines += [" " * 12 + line for line in fmas]
    # The carries: the next W tap, else the next H row of taps, else the
    # next D plane, else the next channel.
    levels = (("m", "n_m", "x_bm", "w_bm"), ("b", "n_b", "x_ab", "w_ab"),
              ("a", "n_a", "x_ca", "w_ca"))
    carry = ["x_k += x_m", "w_k += w_m", "m += 1"]
    for depth, (counter, count, x_next, w_next) in enumerate(levels):
        pad = "    " * depth
        carry += [f"{pad}if {counter} == {count}:", f"{pad}    {counter} = 0",
                  f"{pad}    x_k += {x_next}", f"{pad}    w_k += {w_next}"]
        if depth + 1 < len(levels):
            carry.append(f"{pad}    {levels[depth + 1][0]} += 1")
    lines += [" " * 12 + line for line in carry]
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
#: 8 x 2 where there are one, two or four vectors of channels (4 x 1 made 4
#: chains of dependent multiply-adds, too few to hide their latency), the
#: others for what is left (a last one or two positions one at a time).
_SHAPES = ((8, 1), (8, 2), (4, 1), (4, 2), (4, 3), (1, 1), (1, 2), (1, 3))


_TILES = '''
def _tiles(xf, x_at, x_step, x_tap, wf, w_at, w_step, w_tap, c_in_g, taps, bias, b_at, of,
           o_at, o_step, positions, channels):
    """The sums of ``positions`` outputs (``o_step`` apart, their inputs
    ``x_step`` apart) for ``channels`` output channels side by side, in
    the tiles of :data:`_SHAPES` (each tile's pairs as :func:`_spell_tile`
    takes them): 4 positions x 3 vectors, or 8 x 2 where there are one,
    two or four vectors, then what is left of each."""
    lanes = simd.lanes(of)
    vectors = -(-channels // lanes)
    last = channels - (vectors - 1) * lanes  # lanes of the last vector
    # Four vectors go as two and two, 8 positions a tile where there
    # are; the last four of more, two and two (a tile of one vector and 4
    # positions is 4 chains of dependent multiply-adds, too few to hide
    # their latency). Position by position, so the outputs are written in
    # order (vector by vector over all the positions, 2 -> 408 channels
    # k6 s4 took 0.89 instead of 0.24x the channels-first time).
    wide = vectors <= 2 or vectors == 4
    p = 0
    while p < positions:
        left = positions - p
        tile = (2 * TILE_POSITIONS if wide and left >= 2 * TILE_POSITIONS
                else TILE_POSITIONS if left >= TILE_POSITIONS else 1)
        v = 0
        while v < vectors:
            count = min(vectors - v, 2 if vectors - v == 4 else TILE_VECTORS)
            x_p, w_v, b_v = x_at + p * x_step, w_at + v * lanes, b_at + v * lanes
            o_pv = o_at + p * o_step + v * lanes
            part = last if v + count == vectors else lanes
{dispatch}
            v += count
        p += tile
'''


def _spell_tiles():
    """:func:`_tiles`, its call of the tile of each shape of :data:`_SHAPES`
    spelled in it. A function of its own, the tiles inlined in it: inlined
    into :func:`one_tap_last` with them, the kernel took twice as long to
    compile. No function between it and the tiles: Numba runs its untyped
    passes on every level of an inlined chain and copies each level's IR at
    every site (``benchmarks/TUNING.md``: the same machine code, compiled
    sooner)."""
    dispatch = []
    for i, (p, v) in enumerate(_SHAPES):
        dispatch += [f"            {'if' if i == 0 else 'elif'} tile == {p} and count == {v}:",
                     f"                tile{p}x{v}(xf, x_p, x_step, x_tap, wf, w_v, w_step, w_tap, "
                     "c_in_g, taps, bias, b_v, of, o_pv, o_step, part)"]
    namespace = {f"tile{p}x{v}": _spell_tile(p, v) for p, v in _SHAPES}
    namespace.update(simd=simd, TILE_POSITIONS=TILE_POSITIONS, TILE_VECTORS=TILE_VECTORS)
    exec(_TILES.format(dispatch="\n".join(dispatch)), namespace)
    return njit(nogil=True, fastmath=FASTMATH, _nrt=False)(namespace["_tiles"])


_tiles = _spell_tiles()


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
def _phase_taps(o, p, k, s, d):
    """The taps of kernel length ``k`` that reach output ``o`` along a dim
    (stride ``s``, dilation ``d``, padding ``p``), with or without an
    input there: ``(first, count, tap_step, first_input, input_step)``,
    tap ``first + m * tap_step`` (``m < count``) reading input
    ``first_input - m * input_step``. ``count`` 0 where none does."""
    first, count, last = 0, 0, 0
    for t in range(k):
        if (o + p - t * d) % s == 0:
            if count == 0:
                first = t
            last, count = t, count + 1
    if count <= 1:  # (steps of 1: any will do)
        return first, count, 1, (o + p - first * d) // s, 1
    step = (last - first) // (count - 1)
    return first, count, step, (o + p - first * d) // s, step * d // s


@njit(inline="always")
def _within(first_input, input_step, count, length):
    """Of the ``count`` taps of :func:`_phase_taps`, those whose input lies
    in ``0 .. length``: ``(first m, how many)``, a run in kernel order."""
    lo = max(0, (first_input - length) // input_step + 1)
    hi = min(count, first_input // input_step + 1)
    return lo, max(hi - lo, 0)


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def one_tap_last(x, w_t, bias, out, stride, dilation, pad, parts, row_block, claimed, cancel):
    """A call with few taps per output phase, on channels-last data, for
    finite weights, with the phase tiles' sums.

    x (N, D, H, W, C_in), out (N, OD, OH, OW, C_out), ``w_t`` (KD, KH, KW,
    C_in / groups, groups * Q) from :func:`laid_out_weights`, bias (C_out,), all
    C-contiguous. A task kernel (:func:`.launch.parallel`), a task for
    each of ``parts`` stretches of ``row_block`` output rows ``(n, od,
    oh)`` (:func:`one_tap_split`). Along a row, each W phase's outputs in
    the stretch read consecutive inputs through each of the phase's taps:
    they go in register tiles (:func:`_tiles`), group by group, every
    output channel of a position side by side. The taps of a phase that
    reach the input form a run along each dim, the same for every output
    of the row but those near its ends, which take their own runs one
    output at a time: the taps left out read the zero padding, whose
    products would add nothing (the sums start at ``+0.0``, so they never
    hold ``-0.0``): the same bits.
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
    per_tap = c_in_g * w_pitch  # a tap's weights in w_t
    per_phase = -(-o_w // s_w)
    row_blocks = -(-o_h // row_block)
    tasks = n_batch * o_d * row_blocks * parts
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        n, od, oh_first, j_first, j_end = row_stretch(task, parts, per_phase, row_blocks,
                                                      row_block, o_d)
        kd0, nd, kd_step, id0, id_step = _phase_taps(od, p_d, k_d, s_d, d_d)
        md, nd = _within(id0, id_step, nd, i_d)
        for oh in range(oh_first, min(oh_first + row_block, o_h)):
            kh0, nh, kh_step, ih0, ih_step = _phase_taps(oh, p_h, k_h, s_h, d_h)
            mh, nh = _within(ih0, ih_step, nh, i_h)
            # The input row of the first tap that reaches one, and each
            # next tap's step in x and in w_t along D and H.
            x_row = ((n * i_d + id0 - md * id_step) * i_h + ih0 - mh * ih_step) * i_w
            tap_row = ((kd0 + md * kd_step) * k_h + kh0 + mh * kh_step) * k_w
            o_row = ((n * o_d + od) * o_h + oh) * o_w
            for r in range(min(s_w, o_w)):
                # Outputs j*s_w + r of the phase, j in [j_lo, j_hi).
                j_lo, j_hi = j_first, min(j_end, (o_w - r + s_w - 1) // s_w)
                if j_hi <= j_lo:
                    continue
                o_at, o_step = (o_row + j_lo * s_w + r) * c_out, s_w * c_out
                kw0, nw, kw_step, iw0, iw_step = _phase_taps(r, p_w, k_w, s_w, d_w)
                if nd == 0 or nh == 0 or nw == 0:
                    _bias_only(of, o_at, o_step, j_hi - j_lo, bias, c_out)
                    continue
                x_tap = (-id_step * i_h * i_w * c_in, -ih_step * i_w * c_in, -iw_step * c_in)
                w_tap = (kd_step * k_h * k_w * per_tap, kh_step * k_w * per_tap,
                         kw_step * per_tap)
                # Output j reads input iw0 + j - m * iw_step through W tap
                # m: every tap reaches the input for j in [j_in_lo, j_in_hi).
                j_in_lo = min(max(j_lo, (nw - 1) * iw_step - iw0), j_hi)
                j_in_hi = max(min(j_hi, i_w - iw0), j_in_lo)
                j = j_lo
                while j < j_hi:
                    if j_in_lo <= j < j_in_hi:
                        at, first_w, taps, positions = iw0 + j, kw0, (nd, nh, nw), j_in_hi - j
                    else:
                        mw, count = _within(iw0 + j, iw_step, nw, i_w)
                        at, first_w, taps, positions = (iw0 + j - mw * iw_step,
                                                        kw0 + mw * kw_step, (nd, nh, count), 1)
                    o_j = o_at + (j - j_lo) * o_step
                    j += positions
                    if taps[2] == 0:
                        _bias_only(of, o_j, o_step, 1, bias, c_out)
                        continue
                    w_at = (tap_row + first_w) * per_tap
                    for g in range(groups):
                        _tiles(xf, (x_row + at) * c_in + g * c_in_g, c_in, x_tap, wf,
                               w_at + g * group_pitch, w_pitch, w_tap, c_in_g, taps, bias,
                               g * c_out_g, of, o_j + g * c_out_g, o_step, positions, c_out_g)
