"""The tap-rows kernel: few output channels from many input channels.

The last layer of a decoder (256 -> 1 channels, 128 -> 3) leaves the other
register tiles little to hold: the phase tiles keep a row of accumulators
per output channel, so with one output channel each input vector they load
serves one multiply-add, and the columns kernel's tiles run along output
channel x tap, 9 of a 48-lane tile for one channel of 3x3 taps. ONNX
Runtime was up to 4x faster there.

This kernel turns the product around. Its GEMM rows are the ``M =
C_out/groups x taps`` (output channel, tap) pairs of a group, as
broadcast weights; its columns are the input positions, as vectors read
straight along an input channel's plane; and it sums over the input
channels: ``cols[m, n, p] = sum over ci of w[ci, m] * x[n, ci, p]``, in
register tiles of up to 9 rows x 3 vectors (every row a real one). Each
input vector loaded serves up to 9 multiply-adds, whatever the output
channels. A task takes a stretch of tiles of the batch's positions
(images one after another, so small images waste no lanes) of one group,
and runs the tiles of all ``M`` rows over each tile of positions, reading
``x`` where it lies; a tile across two images, or past the batch's last
position, reads a zero-filled copy of its positions instead.

A second pass folds the columns into the output (col2im, by the sources
of :func:`.columns.fold_sources` worked out once per shape: every output
element sums its taps in a fixed order, in a register, and is written
once), in tasks of an output channel's stretch of one image. Neither pass
depends on the thread count for its sums.

Channels-last data are read and written where they lie, with the same
sums: each tile's positions are transposed into its window, and each fold
task writes a stretch of an image's output positions, all the channels
that lie side by side there. Complex data channels first runs on the real
views of its arrays (``real_views.ran_on_real_views``): the products of every
part of an input position with every part of a weight, the fold
(:data:`COMPLEX_VIEWS`) forming the complex sums; channels last, as its
real twin.

Every product is a product of the definition (the zeros past an image
meet weights only in columns no output reads), so weights need not be
finite. The tiles read the weights where they lie: a tile's rows are
consecutive in each input channel's row of ``w``, and there is nothing to
lay out per call or per plan.
"""

import numpy as np
from numba import njit

from ..config import FASTMATH
from . import atomics, register_tiles, simd
from .columns import single_source
from .tiled import CHANNELS_FIRST, CHANNELS_LAST
from .transpose import channels_to_rows

#: :func:`tap_rows_fold`'s layout for complex data run on its real views
#: (``real_views.ran_on_real_views``): ``cols`` of the views' products, a row
#: per part of each weight and a position per part of each input position,
#: and ``out`` the real view of the complex output.
COMPLEX_VIEWS = 3

#: Most rows (output channel x tap) of a register tile: 9 rows of 3
#: vectors are 27 accumulators, which leave AVX-512's 32 registers room for
#: the 3 vector operands and a broadcast weight. A group's rows are split
#: into blocks as even as can be of at most this many (7 rows as one tile,
#: 36 as 4 of 9, 64 as 8 of 8).
TAP_ROWS = 9

_tile1, _tile2, _tile3, _tile4, _tile5, _tile6, _tile7, _tile8, _tile9 = (
    register_tiles.spell_tile(rows, simd.TILE_VECTORS, None, "strided", prefetch=True)
    for rows in range(1, TAP_ROWS + 1))


@njit(inline="always")
def _row_blocks(m_g):
    """``(blocks, rows, longer)``: a group's ``m_g`` rows in ``blocks``
    tiles, the first ``longer`` of them ``rows + 1`` rows, the rest
    ``rows``; block ``b`` starts at row ``b * rows + min(b, longer)``."""
    blocks = -(-m_g // TAP_ROWS)
    return blocks, m_g // blocks, m_g % blocks


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _every_row(cf, first, tap_pitch, xf, window, in_place, v_at, v_pitch, wf, w_at, c_in_g, m_g,
               ahead_rows):
    """The tiles of a group's ``m_g`` rows (:func:`_row_blocks`) over one
    tile of positions: ``cf[first + m * tap_pitch:]`` for row ``m``, the
    vectors from ``xf[v_at:]`` if ``in_place`` else ``window[v_at:]``
    (``v_pitch`` an input channel, ``ahead_rows`` the channel ahead whose
    vectors each step asks for), the weights from ``wf[w_at:]``. Without
    reference counts (see :mod:`.register_tiles`; choosing the array in
    the caller counted one for every tile of positions). The tile of each
    size is called here, each inlined once, with no dispatching function
    between: Numba runs its untyped passes on every level of an inlined
    chain and copies each level's IR at every site."""
    vec = xf if in_place else window
    blocks, most, longer = _row_blocks(m_g)
    for b in range(blocks):
        m0, rows = b * most + min(b, longer), most + (b < longer)
        # The tile of ``rows`` rows (:func:`.register_tiles.spell_tile`),
        # written over ``cf``.
        at, w_m = first + m0 * tap_pitch, w_at + m0
        if rows == 9:
            _tile9(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 8:
            _tile8(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 7:
            _tile7(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 6:
            _tile6(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 5:
            _tile5(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 4:
            _tile4(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 3:
            _tile3(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        elif rows == 2:
            _tile2(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)
        else:
            _tile1(cf, at, tap_pitch, False, vec, v_at, v_pitch, wf, w_m, c_in_g, m_g,
                   ahead_rows)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def tap_rows_products(x, w, cols, groups, stretch_tiles, layout, ahead_rows, claimed, cancel):
    """``cols[g * M + m, q] = sum over ci of w[g * C_in/groups + ci, m] *
    x[n, g * C_in/groups + ci, p]`` for every group, row ``m < M`` (output
    channel x tap of the group) and position ``q = n * D*H*W + p`` of the
    batch (image ``n``, its position ``p``; and scratch up to the last
    tile's end); ``x`` (N, C_in, D, H, W), ``w`` (C_in, C_out/groups, KD,
    KH, KW), read where it lies (a row of ``M`` per input channel),
    ``cols`` (groups * M, the batch's positions in whole tiles). A task
    kernel (:func:`.launch.parallel`); a task a stretch of
    ``stretch_tiles`` tiles of the batch's positions of one group, every
    input channel summed in one pass. A tile inside one image reads ``x``
    where it lies (copying a stretch's rows first took 1.1-1.4x as long
    where ``x`` was in L3: the copy waited on its loads while the tiles'
    prefetches keep them in flight), and one across two images (small
    images waste no lanes) or past the last position reads a copy of its
    positions of every input channel, zero past the batch, so no load
    leaves ``x``. Channels last (:data:`.tiled.CHANNELS_LAST`: ``x`` (N, D,
    H, W, C_in)) every tile reads such a copy, made in transposed squares
    (:func:`.transpose.channels_to_rows`). Each step of a tile asks for the vectors of
    the input channel ``ahead_rows`` ahead (``config.TAP_ROWS_PREFETCH_ROWS``)."""
    n_batch = x.shape[0]
    if layout == CHANNELS_LAST:
        c_in, i_plane = x.shape[4], x.shape[1] * x.shape[2] * x.shape[3]
    else:
        c_in, i_plane = x.shape[1], x.shape[2] * x.shape[3] * x.shape[4]
    positions = n_batch * i_plane
    c_in_g = c_in // groups
    m_g = w.shape[1] * w.shape[2] * w.shape[3] * w.shape[4]
    tap_pitch = cols.shape[1]
    xf, wf, cf = x.reshape(-1), w.reshape(-1), cols.reshape(-1)
    lanes = simd.lanes(xf)
    width = simd.TILE_VECTORS * lanes
    stretch = stretch_tiles * width
    stretches = -(-positions // stretch)
    window = simd.aligned(np.empty(c_in_g * width + lanes, dtype=x.dtype), c_in_g * width)
    while True:
        task = atomics.claim(claimed)
        if task >= groups * stretches or atomics.cancelled(cancel):
            break
        g, s0 = task // stretches, task % stretches * stretch
        s1 = min(s0 + stretch, positions)
        for q0 in range(s0, s1, width):
            n, p = q0 // i_plane, q0 % i_plane
            if p + width <= i_plane and layout == CHANNELS_FIRST:
                in_place, v_at, v_pitch = True, (n * c_in + g * c_in_g) * i_plane + p, i_plane
            else:
                # A run of each channel per image, whole vectors first.
                filled = 0
                while filled < min(width, positions - q0):
                    n, p = (q0 + filled) // i_plane, (q0 + filled) % i_plane
                    run = min(i_plane - p, width - filled, positions - q0 - filled)
                    whole = run // lanes * lanes
                    if layout == CHANNELS_LAST:
                        channels_to_rows(xf, (n * i_plane + p) * c_in + g * c_in_g, c_in, window,
                                         filled, width, run, c_in_g)
                        filled += run
                        continue
                    src = (n * c_in + g * c_in_g) * i_plane + p
                    for ci in range(c_in_g):
                        s_ci, d_ci = src + ci * i_plane, ci * width + filled
                        for v in range(0, whole, lanes):
                            simd.store(window, d_ci + v, simd.load(xf, s_ci + v))
                        for j in range(whole, run):
                            window[d_ci + j] = xf[s_ci + j]
                    filled += run
                if filled < width:
                    for ci in range(c_in_g):
                        window[ci * width + filled:(ci + 1) * width] = 0
                in_place, v_at, v_pitch = False, 0, width
            _every_row(cf, g * m_g * tap_pitch + q0, tap_pitch, xf, window, in_place, v_at,
                       v_pitch, wf, g * c_in_g * m_g, c_in_g, m_g, ahead_rows)


@njit(nogil=True, cache=True)
def tap_rows_fold(cols, sources, counts, bias, out, image_pitch, chunk, layout, claimed, cancel):
    """``out[n, oc, o] = bias[oc] + sum over j < counts[o] of cols[oc * taps
    + t, n * image_pitch + q]`` where ``sources[o, j] = t * tap_pitch + q``
    (:func:`.columns.fold_sources` of one image, ``tap_pitch`` the row
    length of ``cols``), in that order; out (N, C_out, OD, OH, OW) in
    ``layout`` (:data:`.tiled.CHANNELS_FIRST`), (N, OD, OH, OW, C_out)
    (``CHANNELS_LAST``), or the real view of the complex output with
    ``cols`` of its views' products (:data:`COMPLEX_VIEWS`,
    :func:`_fold_views`). A task kernel; a task about ``chunk``
    outputs of one image, or all of one image's where it has fewer: a
    stretch of one channel's, or of its positions' channels that lie side
    by side (all of them channels last, a complex channel's two parts), so
    that no two tasks write one cache line but at their ends: channels
    last, ``chunk`` cut to one channel's image before it was shared among
    the channels left r46's tasks 11 positions of 7 channels, each writing
    the ends of its neighbours' lines (the fold took 1.7 times its
    channels-first time). Unsigned indices: Numba checks a signed one for
    wrapping at every access, and the fold is little else."""
    n_batch = out.shape[0]
    if layout == CHANNELS_LAST:
        c_out, o_plane = out.shape[4], out.shape[1] * out.shape[2] * out.shape[3]
        side_by_side, set_pitch, o_pitch = c_out, 0, c_out
    else:  # complex views: in complex elements (of is indexed by parts)
        c_out, o_plane = out.shape[1], out.shape[2] * out.shape[3] * out.shape[4]
        o_plane //= 2 if layout == COMPLEX_VIEWS else 1
        side_by_side, set_pitch, o_pitch = 1, o_plane, 1
    taps, tap_pitch = cols.shape[0] // c_out, cols.shape[1]
    step = min(-(-chunk // side_by_side), o_plane)
    chunks, sets = -(-o_plane // step), c_out // side_by_side
    cf, of, sf = cols.reshape(-1), out.reshape(-1), sources.reshape(-1)
    width = np.uint64(sources.shape[1])
    while True:
        task = atomics.claim(claimed)
        if task >= n_batch * sets * chunks or atomics.cancelled(cancel):
            break
        image_set, o0 = task // chunks, task % chunks * step
        n, first_channel = image_set // sets, image_set % sets * side_by_side
        image_base = np.uint64(n * image_pitch)
        dst = np.uint64(n * c_out * o_plane + image_set % sets * set_pitch)
        o_end = min(o0 + step, o_plane)
        # A channel at a time, its outputs in order (channels first, one
        # stretch, as the loop was before the other layouts came; with the
        # channel inside, the one-source fold of r61 took 239 against 61 us).
        if layout == COMPLEX_VIEWS:
            _fold_views(cf, sf, width, counts, o0, o_end,
                        np.uint64(first_channel * taps * tap_pitch) + image_base, tap_pitch,
                        bias[2 * first_channel], bias[2 * first_channel + 1], of, dst)
            continue
        for k in range(np.uint64(side_by_side)):
            oc = first_channel + k
            base = np.uint64(oc * taps * tap_pitch) + image_base
            at, first = dst + k, bias[oc]
            if width == 1:
                for o in range(np.uint64(o0), np.uint64(o_end)):
                    of[at + o * np.uint64(o_pitch)] = single_source(
                        cf, base + np.uint64(sf[o]), counts[o], first)
                continue
            for o in range(np.uint64(o0), np.uint64(o_end)):
                total = first
                for j in range(np.uint64(counts[o])):
                    total += cf[base + np.uint64(sf[o * width + j])]
                of[at + o * np.uint64(o_pitch)] = total


@njit(inline="always")
def _fold_views(cf, sf, width, counts, o0, o1, base, tap_pitch, bias_re, bias_im, of, dst):
    """:func:`tap_rows_fold`'s outputs ``o0 .. o1`` of one complex output
    channel and image (:data:`COMPLEX_VIEWS`; complex element ``dst + o``
    of ``of``, the output's real view): the four real products of each
    complex one lie side by side in ``cf`` from ``base``, a weight's
    parts' rows ``tap_pitch`` apart and an input position's parts
    adjacent, so source ``s`` (:func:`.columns.fold_sources`, rows
    ``tap_pitch`` apart) doubled indexes the real parts' product; the real
    part sums ``re * re - im * im``, the imaginary part ``re * im + im *
    re``."""
    one, two = np.uint64(1), np.uint64(2)
    im_w = np.uint64(tap_pitch)  # from a weight's real part's row to its imaginary part's
    if width == 1:  # as columns.single_source: read and selected without a branch
        for o in range(np.uint64(o0), np.uint64(o1)):
            s = base + two * np.uint64(sf[o])
            re = bias_re + (cf[s] - cf[s + im_w + one])
            im = bias_im + (cf[s + im_w] + cf[s + one])
            present = counts[o] != 0
            at = two * (dst + o)
            of[at] = re if present else bias_re
            of[at + one] = im if present else bias_im
        return
    for o in range(np.uint64(o0), np.uint64(o1)):
        re, im = bias_re, bias_im
        for j in range(np.uint64(counts[o])):
            s = base + two * np.uint64(sf[o * width + j])
            re += cf[s] - cf[s + im_w + one]
            im += cf[s + im_w] + cf[s + one]
        at = two * (dst + o)
        of[at] = re
        of[at + one] = im
