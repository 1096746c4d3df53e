"""The columns kernel: many channels on few positions, weights read once.

When many channels meet few input positions (512 -> 512 channels on 8x8
images, 1024 -> 512 on 4x4), the weights outweigh everything else: there
are ``C_in * C_out * K`` of them and each serves only ``N * H * W``
multiply-adds. Then the work is bound by reading the weights, and the way
to be fast is to read each one from memory once per call (a rearranged
copy of them all, like the tiled kernel's weight table, costs a second and
third pass).

So this kernel computes the GEMM columns ``cols[p, m] = sum over ci of
x[ci, p] * w[ci, m]`` (``m`` = output channel and tap, contiguous in the
weight array; ``p`` = image and input position: the batch folded into the
positions, so every image shares each weight load) with register tiles
vectorised along ``m``: 3 vectors of weights x 8 broadcast positions, 24
accumulators for the whole sum over the input channels. A task owns a
block of output channels of one group, so its weights are a stretch of
every row of ``w``. It copies them into a small packed block, a few rows
at a time, for the tiles to pass over once per 8 positions; or, with at
most 32 positions in all (where the copy would cost as much as the tiles),
the tiles read them in place, from the vector boundary at or before them.
Then the task folds its columns into those channels of the output (col2im
by sources worked out once per launch, every output element summing its
taps in a fixed order, in a register). No two tasks write the same output,
and the sums do not depend on the thread count.

A plan (:class:`numba_deconv.Plan`) packs the weights once
(:func:`pack_weights`) and its calls read them as one stream per tile,
with no copy: what ONNX Runtime's session does at load, and the only way
past reading the weights twice when they are all that matters.

Both passes -- the inputs laid out for the broadcasts, then the tasks --
are task kernels (:func:`.launch.parallel`): a ``prange`` launch cost
about 37 us on Numba's ``workqueue`` layer, a tenth of a 256 -> 256
channel call on 4x4 images.

Every product is a product of the definition (no zero padding is
multiplied), so weights need not be finite.
"""

import numpy as np
from numba import njit

from .. import _phases
from ..config import FASTMATH
from . import atomics, register_tiles, simd

#: Input positions per register tile (broadcast, one accumulator row each);
#: the tile is simd.TILE_VECTORS vectors of weights wide.
TILE_POSITIONS = 8

# cols[at + j*pitch + v*lanes + l] (+)= sum over k of xs[x_at + 8k + j] *
# wf[w_at + k*w_pitch + v*lanes + l]: 8 positions j x 3 vectors of weights.
_tile = register_tiles.spell_tile(TILE_POSITIONS, simd.TILE_VECTORS, TILE_POSITIONS, "strided")
_tile_ahead = register_tiles.spell_tile(TILE_POSITIONS, simd.TILE_VECTORS, TILE_POSITIONS,
                                       "strided", prefetch=True)
_tap_inputs = njit(inline="always")(_phases.tap_inputs)


@njit(inline="always")
def _fold_runs(n_batch, taps_of, o_sizes, i_sizes, stride, dilation, pad, tap_pitch, o_image):
    """The col2im of one output channel as runs ``(src, dst, count)``:
    ``out[dst + i * s_w] += cols[src + i]`` for ``i < count``, with ``src``
    from the channel's first column (a row of positions per tap, rows
    ``tap_pitch`` apart) and ``dst`` from its first output element; in
    order of image, tap, then input row."""
    o_d, o_h, o_w = o_sizes
    i_d, i_h, i_w = i_sizes
    k_d, k_h, k_w = taps_of
    s_d, s_h, s_w = stride
    d_d, d_h, d_w = dilation
    p_d, p_h, p_w = pad
    i_plane = i_d * i_h * i_w
    runs = np.empty((n_batch * k_d * k_h * k_w * i_d * i_h, 3), dtype=np.int64)
    count = 0
    for n in range(n_batch):
        t = 0
        for kd in range(k_d):
            for kh in range(k_h):
                for kw in range(k_w):
                    _, _, lo, hi = _tap_inputs(kw, s_w, d_w, p_w, i_w, o_w)
                    for i_dd in range(i_d):
                        od = i_dd * s_d + kd * d_d - p_d
                        for i_hh in range(i_h):
                            oh = i_hh * s_h + kh * d_h - p_h
                            if hi <= lo or od < 0 or od >= o_d or oh < 0 or oh >= o_h:
                                continue
                            runs[count, 0] = (n * i_plane + (i_dd * i_h + i_hh) * i_w + lo
                                              + t * tap_pitch)
                            runs[count, 1] = (n * o_image + (od * o_h + oh) * o_w + kw * d_w - p_w
                                              + lo * s_w)
                            runs[count, 2] = hi - lo
                            count += 1
                    t += 1
    return runs[:count]


@njit(cache=True)
def fold_sources(n_batch, taps_of, o_sizes, i_sizes, stride, dilation, pad, tap_pitch):
    """The col2im of one output channel as ``(sources, counts)``: output
    ``e = n * O + o`` (image n, flat output position o) sums
    ``cols[sources[e, j]]`` for ``j < counts[e]``, from the channel's
    first column, in tap order, where the columns of a tap are a row of
    the batch's positions and its rows are ``tap_pitch`` apart
    (:func:`column_rows`). The same for every channel and every call of a
    shape, so worked out once with its launch (the floor divisions and
    bounds cost more than the adds). ``sources[e, j]`` is 0 for ``j >=
    counts[e]``."""
    o_plane = o_sizes[0] * o_sizes[1] * o_sizes[2]
    runs = _fold_runs(n_batch, taps_of, o_sizes, i_sizes, stride, dilation, pad, tap_pitch,
                      o_plane)
    counts = np.zeros(n_batch * o_plane, dtype=np.int64)
    for r in range(runs.shape[0]):
        for i in range(runs[r, 2]):
            counts[runs[r, 1] + i * stride[2]] += 1
    # Zeros past each output's count: valid indices for a fold that reads
    # one source whatever the count (see :func:`_fold`).
    sources = np.zeros((counts.size, max(counts.max(), 1) if counts.size else 1), dtype=np.int64)
    counts[:] = 0
    for r in range(runs.shape[0]):  # image, tap, row: each output's taps in order
        for i in range(runs[r, 2]):
            e = runs[r, 1] + i * stride[2]
            sources[e, counts[e]] = runs[r, 0] + i
            counts[e] += 1
    return sources, counts


def column_rows(positions, lanes):
    """The positions a tap's row of turned columns holds (the batch's, in
    whole tiles, then whole vectors: :func:`columns_tiled` turns them in
    squares of ``lanes``); the ``tap_pitch`` of :func:`fold_sources`."""
    tiled = -(-positions // TILE_POSITIONS) * TILE_POSITIONS
    return -(-tiled // lanes) * lanes


_column_rows = njit(inline="always")(column_rows)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _turn_and_fold(cols, c_at, pitch, turned, rows, r0, r1, taps, sources, counts, n0, n1, bias,
                   of, o_base, o_image, o_step, o_plane):
    """out[n, oc] (flat at ``o_base + n * o_image``, its outputs ``o_step``
    apart) of images ``n0 .. n1`` = bias + the columns of output channel oc
    by :func:`fold_sources`: each output summed in a register and written
    once. The channel's columns (``taps`` a row of ``cols`` from
    ``c_at``, rows ``r0 .. r1`` of ``pitch``) are first turned in squares
    into ``turned`` (a row of ``rows`` positions per tap). (Unsigned
    indices: Numba checks a signed one for wrapping at every access, and
    the fold of one tap per output is little else. Without reference
    counts, see :mod:`.register_tiles`: inlined, it counted six a
    channel.)"""
    _turn(cols, c_at, pitch, turned, 0, rows, r0, r1, taps)
    sf = sources.reshape(-1)
    width = np.uint64(sources.shape[1])
    step = np.uint64(o_step)
    for n in range(n0, n1):
        base = np.uint64(o_base + n * o_image)
        first = np.uint64(n * o_plane)
        if width == 1:
            for o in range(np.uint64(o_plane)):
                e = first + o
                of[base + o * step] = single_source(turned, np.uint64(sf[e]), counts[e], bias)
        else:
            for o in range(np.uint64(o_plane)):
                e = first + o
                total = bias
                for j in range(np.uint64(counts[e])):
                    total += turned[np.uint64(sf[e * width + j])]
                of[base + o * step] = total


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _turn_and_fold_parts(cols, c_at, pitch, turned, rows, r0, r1, taps, sources, counts, n0, n1,
                         bias_re, bias_im, of, o_base, o_image, o_step, o_plane):
    """:func:`_turn_and_fold` of a complex call on its parts (``of`` the real
    view of the output, two parts an element): a column per part of each
    weight (``taps`` counts them) and a position per part of each input,
    so the four real products of each complex one lie side by side in
    ``turned``, a tap's rows ``rows`` apart, its positions' parts
    adjacent; ``sources`` (:func:`fold_sources`, with a tap's rows
    ``rows`` apart) doubled index the real weight parts' products of the
    real input parts. Each output's real part sums
    ``re * re - im * im``, its imaginary part ``re * im + im * re``."""
    _turn(cols, c_at, pitch, turned, 0, rows, r0, r1, taps)
    sf = sources.reshape(-1)
    width = np.uint64(sources.shape[1])
    step = np.uint64(o_step)
    one, two = np.uint64(1), np.uint64(2)
    im_w = np.uint64(rows)  # from a weight's real part's products to its imaginary part's
    for n in range(n0, n1):
        base = np.uint64(o_base + n * o_image)
        first = np.uint64(n * o_plane)
        for o in range(np.uint64(o_plane)):
            e = first + o
            at = two * (base + o * step)
            if width == 1:  # as single_source: read and selected without a branch
                s = two * np.uint64(sf[e])
                re = bias_re + (turned[s] - turned[s + im_w + one])
                im = bias_im + (turned[s + im_w] + turned[s + one])
                present = counts[e] != 0
                of[at] = re if present else bias_re
                of[at + one] = im if present else bias_im
                continue
            re, im = bias_re, bias_im
            for j in range(np.uint64(counts[e])):
                s = two * np.uint64(sf[e * width + j])
                re += turned[s] - turned[s + im_w + one]
                im += turned[s + im_w] + turned[s + one]
            of[at] = re
            of[at + one] = im


@njit(inline="always")
def _turn(cols, c_at, pitch, turned, t_at, rows, r0, r1, taps):
    """A channel's columns (``taps`` a row of ``cols`` from ``c_at``, rows
    ``r0 .. r1`` of ``pitch``) turned in squares into ``turned`` from
    ``t_at``: a row of ``rows`` positions per tap. The squares' last taps
    may read past the channel's, into the next one's or the next row (the
    room past the rows of ``cols``)."""
    lanes = simd.lanes(cols)
    for p in range(r0, r1, lanes):
        for t in range(0, taps, lanes):
            simd.transpose_tile(cols, p * pitch + c_at + t, pitch, turned, t_at + t * rows + p,
                                rows)


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _turn_and_fold_last(cols, c_at, pitch, turned, room, rows, r0, r1, taps, n_channels,
                        sources, counts, n0, n1, bias, b0, of, o_base, o_image, o_step,
                        o_plane):
    """:func:`_turn_and_fold` for ``n_channels`` output channels side by side
    in a channels-last output (their columns ``taps`` apart in ``cols``
    from ``c_at``, their biases from ``b0``): each channel's columns turned
    into its own ``room`` of ``turned``, then each output position's
    channels summed and written together, each as :func:`_turn_and_fold`
    sums it. (A channel at a time, the stores c_out apart: the fold of 443
    -> 273 float64 k6 s4 took 23 % of the call, against 10 % channels
    first.)"""
    channel_room = np.uint64(room)
    for c in range(n_channels):
        _turn(cols, c_at + c * taps, pitch, turned, c * room, rows, r0, r1, taps)
    sf = sources.reshape(-1)
    width = np.uint64(sources.shape[1])
    for n in range(n0, n1):
        for o in range(np.uint64(o_plane)):
            e = np.uint64(n * o_plane) + o
            at = np.uint64(o_base + n * o_image) + o * np.uint64(o_step)
            count = counts[e]
            if width == 1:
                source = np.uint64(sf[e])
                for c in range(np.uint64(n_channels)):
                    of[at + c] = single_source(turned, c * channel_room + source, count,
                                               bias[b0 + c])
            else:
                for c in range(np.uint64(n_channels)):
                    total = bias[b0 + c]
                    for j in range(np.uint64(count)):
                        total += turned[c * channel_room + np.uint64(sf[e * width + j])]
                    of[at + c] = total


@njit(inline="always")
def single_source(cols, source, count, bias):
    """An output of at most one tap (every output's, where the kernel is no
    longer than the stride): ``bias + cols[source]`` if ``count`` else
    ``bias``, the same bits as the fold's loop, read and selected without a
    branch (a fold of such outputs twice as fast as by the loop: r61's 112
    -> 55 us); ``source`` 0 (still a valid index) where ``count`` is 0."""
    total = bias + cols[source]
    return total if count != 0 else bias


@njit(inline="always")
def _pack(packed, wf, src, src_pitch, rows, first_tile, n_tiles, m_count, width, k_block):
    """packed[((t - first_tile) * k_block + r) * width + l] = wf[src + r *
    src_pitch + t * width + l] for the ``rows`` rows r, the tiles t from
    ``first_tile`` and the lanes l < ``width`` inside the ``m_count``
    weights of a row (the lanes past them are left as they are: zero)."""
    lanes = simd.lanes(wf)
    full_tiles = m_count // width
    for r in range(rows):
        row = np.uint64(src + r * src_pitch)
        for t in range(first_tile, n_tiles):
            dst = np.uint64(((t - first_tile) * k_block + r) * width)
            at = row + np.uint64(t * width)
            if t < full_tiles:
                simd.store(packed, dst, simd.load(wf, at))
                simd.store(packed, dst + np.uint64(lanes), simd.load(wf, at + np.uint64(lanes)))
                simd.store(packed, dst + np.uint64(2 * lanes),
                           simd.load(wf, at + np.uint64(2 * lanes)))
            else:
                for l in range(np.uint64(m_count - t * width)):
                    packed[dst + l] = wf[at + l]


#: Position tiles per task of :func:`gather_positions`, and input channels
#: it copies together into each tile.
GATHER_TILES = 32
GATHER_CHANNELS = 32


@njit(inline="always")
def _tile_in_one_image(p0, positions, i_plane):
    """Whether the tile of positions from ``p0`` lies whole in one image."""
    return p0 + TILE_POSITIONS <= positions and p0 % i_plane + TILE_POSITIONS <= i_plane


@njit(nogil=True, cache=True)
def gather_positions(x, xs, channels_last, parts, claimed, cancel):
    """``xs[g, tile, ci, j]`` = input channel ``g * C_in/groups + ci`` at
    position ``tile * TILE_POSITIONS + j`` of the batch (image-major), zero
    past the last: the columns tiles read their broadcasts as one stream.
    A task kernel (:func:`.launch.parallel`), a task ``GATHER_TILES``
    tiles of a group: ``GATHER_CHANNELS`` channels at a time, tile by
    tile, each tile's row of each channel copied as whole vectors (their
    rows read in order along the channels; tile by tile, position by
    position down the channels, it took 0.8 ns an element: 70 channels a
    plane apart, each a cache line; channel by channel, row by row, each
    row written a tile apart, and element by element, 128 -> 4 channels on
    8 20x20 images took 305 us against 78 now, on one thread); then the
    tiles across two images or past the last position, element by
    element. ``channels_last``: x is
    (N, D, H, W, parts * C_in), each position's channels read in order;
    with ``parts`` 2, the real view of complex data, whose positions are
    each input position's parts in turn (channels first, the real view
    (N, C_in, D, H, 2 W) has them so already)."""
    n_batch = x.shape[0]
    groups, p_tiles, c_in_g = xs.shape[0], xs.shape[1], xs.shape[2]
    if channels_last:
        c_in, i_plane = x.shape[4] // parts, x.shape[1] * x.shape[2] * x.shape[3] * parts
    else:
        c_in, i_plane = x.shape[1], x.shape[2] * x.shape[3] * x.shape[4]
    positions = n_batch * i_plane
    xf, xsf = x.reshape(-1), xs.reshape(-1)
    lanes = simd.lanes(xf)
    blocks = -(-p_tiles // GATHER_TILES)
    run = np.uint64(TILE_POSITIONS)
    while True:
        task = atomics.claim(claimed)
        if task >= groups * blocks or atomics.cancelled(cancel):
            break
        g, pt0 = task // blocks, task % blocks * GATHER_TILES
        pt1 = min(pt0 + GATHER_TILES, p_tiles)
        if channels_last:
            for pt in range(pt0, pt1):
                dst = np.uint64(((g * p_tiles + pt) * c_in_g) * TILE_POSITIONS)
                present = min(TILE_POSITIONS, positions - pt * TILE_POSITIONS)
                for j in range(present):
                    q = pt * TILE_POSITIONS + j
                    src = np.uint64((q // parts * c_in + g * c_in_g) * parts + q % parts)
                    for ci in range(np.uint64(c_in_g)):
                        xsf[dst + ci * run + np.uint64(j)] = xf[src + ci * np.uint64(parts)]
                for ci in range(c_in_g):
                    for j in range(present, TILE_POSITIONS):
                        xsf[dst + np.uint64(ci * TILE_POSITIONS + j)] = 0
            continue
        for c0 in range(0, c_in_g, GATHER_CHANNELS):
            for pt in range(pt0, pt1):
                p0 = pt * TILE_POSITIONS
                if not _tile_in_one_image(p0, positions, i_plane):
                    continue
                n, s = p0 // i_plane, p0 % i_plane
                for ci in range(c0, min(c0 + GATHER_CHANNELS, c_in_g)):
                    src = np.uint64((n * c_in + g * c_in_g + ci) * i_plane + s)
                    dst = np.uint64(((g * p_tiles + pt) * c_in_g + ci) * TILE_POSITIONS)
                    if lanes <= TILE_POSITIONS:
                        for v in range(0, TILE_POSITIONS, lanes):
                            simd.store(xsf, dst + v, simd.load(xf, src + v))
                    elif ci + 1 < c_in_g and src + lanes <= xf.size:
                        # A vector wider than the row: its excess lands in
                        # the next channel's row, which is written after.
                        simd.store(xsf, dst, simd.load(xf, src))
                    else:
                        for j in range(run):
                            xsf[dst + j] = xf[src + j]
        for pt in range(pt0, pt1):
            p0 = pt * TILE_POSITIONS
            if _tile_in_one_image(p0, positions, i_plane):
                continue
            dst = ((g * p_tiles + pt) * c_in_g) * TILE_POSITIONS
            present = min(TILE_POSITIONS, positions - p0)
            for j in range(present):
                n, s = (p0 + j) // i_plane, (p0 + j) % i_plane
                src = (n * c_in + g * c_in_g) * i_plane + s
                for ci in range(c_in_g):
                    xsf[dst + ci * TILE_POSITIONS + j] = xf[src + ci * i_plane]
            for ci in range(c_in_g):
                for j in range(present, TILE_POSITIONS):
                    xsf[dst + ci * TILE_POSITIONS + j] = 0


@njit(cache=True)
def pack_weights(w, groups, channel_block):
    """The weights ``w`` (C_in, C_out/groups, KD, KH, KW) as the columns
    tiles read them, once for many calls (:class:`numba_deconv.Plan`):
    ``packed[task, t, ci, l]`` is weight ``t * width + l`` (output channel
    and tap) of the task's ``channel_block`` output channels of one group,
    for its input channel ``ci``; zero past the task's weights."""
    c_in, c_out_g = w.shape[0], w.shape[1]
    taps = w.shape[2] * w.shape[3] * w.shape[4]
    c_in_g = c_in // groups
    wf = w.reshape(-1)
    width = simd.TILE_VECTORS * simd.lanes(wf)
    blocks = -(-c_out_g // channel_block)
    tiles = -(-channel_block * taps // width)
    packed = np.zeros((groups * blocks, tiles, c_in_g, width), dtype=w.dtype)
    for task in range(groups * blocks):
        g, b = task // blocks, task % blocks
        m0 = b * channel_block * taps
        m_count = min(channel_block, c_out_g - b * channel_block) * taps
        # All input channels as one block of the per-call copy's layout.
        _pack(packed[task].reshape(-1), wf, g * c_in_g * c_out_g * taps + m0, c_out_g * taps,
              c_in_g, 0, -(-m_count // width), m_count, width, c_in_g)
    return packed


#: Where :func:`_down_positions` reads a tile's weights: ``w`` in place,
#: the plan's packed weights, or the task's packed block.
IN_PLACE, PREPACKED, PACKED = 0, 1, 2


@njit(nogil=True, fastmath=FASTMATH, cache=True, _nrt=False)
def _down_positions(cols, col_at, pitch, add, wf, pf, packed, source, w_at, w_pitch, xsf, x_at,
                    x_step, pt0, pt1, k_count, ahead_rows):
    """One tile of weights (from ``wf``, ``pf`` or ``packed``, as
    ``source`` says) down the position tiles ``pt0..pt1`` of
    :func:`columns_tiled`: tile ``pt`` sums into ``cols[pt * TILE_POSITIONS
    * pitch + col_at:]`` from ``xsf[x_at + pt * x_step:]``. One call site
    of each tile for every source (the prefetching tile for weights packed
    once only: in place, its prefetches slowed the tiles). Without
    reference counts (see :mod:`.register_tiles`): choosing an array per
    tile of weights counted one up and down each time."""
    weights = wf if source == IN_PLACE else (pf if source == PREPACKED else packed)
    for pt in range(pt0, pt1):
        at = pt * TILE_POSITIONS * pitch + col_at
        if ahead_rows:
            _tile_ahead(cols, at, pitch, add, weights, w_at, w_pitch, xsf, x_at + pt * x_step,
                        k_count, ahead_rows)
        else:
            _tile(cols, at, pitch, add, weights, w_at, w_pitch, xsf, x_at + pt * x_step, k_count)


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def columns_tiled(xs, w, prepacked, bias, out, sources, counts, channel_block, image_parts,
                  i_plane, k_block, pitch, in_place, channels_last, complex_parts, ahead_rows,
                  fold_last_bytes, claimed, cancel):
    """Transposed convolution by weight-vectorised register tiles and col2im.

    ``xs`` the inputs as :func:`gather_positions` lays them out, w (C_in,
    C_out/groups, KD, KH, KW), out (N, C_out, OD, OH, OW) or, with
    ``channels_last``, (N, OD, OH, OW, C_out), bias (C_out,), all
    C-contiguous; ``sources`` and ``counts`` the fold of one channel
    (:func:`fold_sources`, for rows of :func:`column_rows` positions).
    Columns are ``pitch`` per position. A task kernel
    (:func:`.launch.parallel`): a task owns ``channel_block`` output
    channels of one group and one of ``image_parts`` ranges of images of
    ``i_plane`` input positions each (the fold sums within an image, so no
    two tasks write the same output: few output channels split by images
    keep a whole block of taps across a tile's width), and sums over the
    input channels ``k_block`` at a time. Its tiles read the
    weights from ``prepacked`` (:func:`pack_weights`) where it is not empty;
    else from a packed copy of each block; or, ``in_place``, straight from
    ``w``: all but a ragged last tile, which is packed with zeros past the
    task's weights so that no read leaves ``w``. In place the tiles may
    start up to a vector before the task's weights (never before ``w``), so
    that their loads start on a vector boundary; those columns are scratch,
    as are those of the lanes past a task's weights in a copy (zeros, or an
    earlier task's weights).

    With ``complex_parts``, the call is a complex one on the real views of
    its arrays (:func:`_turn_and_fold_parts`): ``xs`` gathered from
    positions of two parts each, ``w`` (C_in, C_out/groups, KD, KH, 2 KW),
    columns of two parts each, ``out`` and ``bias`` (2 C_out,) two parts an
    element; ``i_plane`` counts the parts.

    Each step of a tile asks for the row of weights ``ahead_rows`` ahead
    (``config.COLUMNS_PREPACKED_PREFETCH_ROWS`` for ``prepacked``, else 0).
    Channels last, a task folds its output channels together where their
    turned columns fit ``fold_last_bytes`` (:func:`_turn_and_fold_last`).
    """
    groups, p_tiles, c_in_g = xs.shape[0], xs.shape[1], xs.shape[2]
    n_batch = out.shape[0]
    c_out_g, taps = w.shape[1], w.shape[2] * w.shape[3] * w.shape[4]
    m_g = c_out_g * taps
    parts = 2 if complex_parts else 1  # of each output element
    if channels_last:  # each output position's channels side by side
        c_out, o_plane = out.shape[4] // parts, out.shape[1] * out.shape[2] * out.shape[3]
        o_channel, o_step = 1, c_out
    else:
        c_out, o_plane = out.shape[1], out.shape[2] * out.shape[3] * out.shape[4] // parts
        o_channel, o_step = o_plane, 1
    wf, xsf, of, pf = w.reshape(-1), xs.reshape(-1), out.reshape(-1), prepacked.reshape(-1)
    lanes = simd.lanes(wf)
    width = simd.TILE_VECTORS * lanes
    blocks = -(-c_out_g // channel_block)
    # In place, a task's tiles start up to a vector before its weights, at
    # a vector boundary when every row of ``w`` starts equally far past
    # one: then each tile's row of weights spans 3 cache lines, not 4
    # (NumPy's large arrays start 16 bytes past a page).
    aligned_rows = in_place and m_g % lanes == 0
    w_lead = simd.lanes_before_boundary(wf)
    # Columns of a task: a row of ``pitch`` per position, tile t's m at
    # t * width (the excess before and after the task's weights is scratch).
    tiles_per_task = pitch // width
    # ... rows for whole squares of positions (those past the batch's are
    # never read back), and one channel's columns turned: a row of
    # positions per tap (taps in whole squares), so that the fold reads
    # each tap's positions in order, from L1 or L2 (read across the rows
    # of ``cols``, a column a row, it took half a call of 57 -> 12
    # channels on 11x5 images).
    rows = _column_rows(p_tiles * TILE_POSITIONS, lanes)
    cols = simd.aligned(np.empty(rows * pitch + lanes, dtype=out.dtype), rows * pitch)
    square_taps = -(-taps // lanes) * lanes
    # Channels last, a task's channels are folded together where each has
    # its own room (a whole number of vectors) in ``turned`` (complex parts
    # a channel at a time).
    fold_together = (channels_last and not complex_parts
                     and channel_block * square_taps * rows * out.itemsize <= fold_last_bytes)
    room = square_taps * rows + lanes
    turned = simd.aligned(np.empty((channel_block if fold_together else 1) * room + lanes,
                                   dtype=out.dtype),
                          (channel_block if fold_together else 1) * room)
    packed_tiles = 1 if in_place else (0 if pf.size else tiles_per_task)
    packed = simd.aligned(np.zeros(packed_tiles * k_block * width + lanes, dtype=w.dtype),
                          packed_tiles * k_block * width)
    prepacked_tiles = prepacked.shape[1]
    while True:
        task = atomics.claim(claimed)
        if task >= groups * blocks * image_parts or atomics.cancelled(cancel):
            break
        gb, part = task // image_parts, task % image_parts
        g, b = gb // blocks, gb % blocks
        # The part's images and the position tiles they touch (a tile
        # across two images is computed by both parts; each folds its own).
        n0 = n_batch * part // image_parts
        n1 = n_batch * (part + 1) // image_parts
        pt0, pt1 = 0, p_tiles
        if image_parts > 1:
            pt0 = n0 * i_plane // TILE_POSITIONS
            pt1 = -(-n1 * i_plane // TILE_POSITIONS)
        co0 = b * channel_block
        co1 = min(co0 + channel_block, c_out_g)
        lead = (w_lead + co0 * taps) % lanes if aligned_rows else 0
        if g * c_in_g * m_g + co0 * taps < lead:
            lead = 0  # the vector boundary is before the array
        m0, m1 = co0 * taps - lead, co1 * taps
        n_tiles = -(-(m1 - m0) // width)
        first_packed = (m1 - m0) // width if in_place else 0
        for k0 in range(0, c_in_g, k_block):
            if atomics.cancelled(cancel):  # a task spans every image: look again per block
                break
            k1 = min(k0 + k_block, c_in_g)
            row0 = (g * c_in_g + k0) * m_g + m0
            # Packed, a block's weights are read row by row, as runs: the
            # rows of ``w`` are often a power of two apart (512 channels x
            # 16 taps: 32 KiB), and a tile reading down them in place
            # would find its lines in the same few cache sets, so with
            # many positions each pass over them would go to memory. In
            # place pays only with few positions (each weight read by one
            # or two tiles), where it saves the copy.
            if not pf.size:
                _pack(packed, wf, row0, m_g, k1 - k0, first_packed, n_tiles, m1 - m0, width,
                      k_block)
            for t in range(n_tiles):
                if t < first_packed:
                    source, w_at, w_pitch = IN_PLACE, row0 + t * width, m_g
                elif pf.size:
                    source, w_at, w_pitch = PREPACKED, ((gb * prepacked_tiles + t) * c_in_g
                                                        + k0) * width, width
                else:
                    source, w_at, w_pitch = PACKED, (t - first_packed) * k_block * width, width
                _down_positions(cols, t * width, pitch, k0 > 0, wf, pf, packed, source, w_at,
                                w_pitch, xsf, (g * p_tiles * c_in_g + k0) * TILE_POSITIONS,
                                c_in_g * TILE_POSITIONS, pt0, pt1, k1 - k0, ahead_rows)
        if atomics.cancelled(cancel):
            break
        r0 = pt0 * TILE_POSITIONS // lanes * lanes
        r1 = min(-(-pt1 * TILE_POSITIONS // lanes) * lanes, rows)
        if fold_together:
            _turn_and_fold_last(cols, lead, pitch, turned, room, rows, r0, r1, taps, co1 - co0,
                                sources, counts, n0, n1, bias,
                                g * c_out_g + co0, of, g * c_out_g + co0, c_out * o_plane,
                                o_step, o_plane)
            continue
        for co in range(co0, co1):
            oc = g * c_out_g + co
            if complex_parts:
                _turn_and_fold_parts(cols, lead + (co - co0) * taps, pitch, turned, rows, r0, r1,
                                     taps, sources, counts, n0, n1, bias[2 * oc],
                                     bias[2 * oc + 1], of, oc * o_channel, c_out * o_plane,
                                     o_step, o_plane)
                continue
            _turn_and_fold(cols, lead + (co - co0) * taps, pitch, turned, rows, r0, r1, taps,
                           sources, counts, n0, n1, bias[oc], of, oc * o_channel,
                           c_out * o_plane, o_step, o_plane)
