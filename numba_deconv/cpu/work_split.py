"""The CPU kernels' work split: where a call's work goes, worked out once.

:func:`plan_launch` (and :func:`plan_conv_launch` for ``conv``) turns the
kernel that :func:`numba_deconv._dispatch.choose_kernel` picked into a
:class:`Launch`: the arrays' rank-3 shapes and the kernel's layout (its
blocks, tasks and tables), which the dispatcher keeps per call shape and
:func:`.driver.run` launches on every call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing

import numpy as np

from .. import config
from ._blas import blas_layout
from .columns import TILE_POSITIONS, column_rows, fold_sources
from .correlate import grid_span, plane_tables
from .simd import LINE_BYTES, VECTOR_BYTES, tile_width
from .tile_products import K_CHUNK_BYTES
from .tiled import TILE_ROWS, phase_span, phase_tables

class PlanesLayout(typing.NamedTuple):
    """Work split of :func:`.kernels.direct_planes`."""

    blocks: int  # blocks of rows per plane task
    chunks: int  # parallel chunks of tasks


class TiledLayout(typing.NamedTuple):
    """Phase tables and work split of :func:`.tiled.direct_tiled`."""

    pitch: tuple  # padded input and accumulator dims
    shift_max: tuple  # the input lies at xp[shift_max + i]
    phases: np.ndarray  # (n_phases, 6): r and the outputs of the phase per dim
    tap_index: np.ndarray  # (n_phases, most taps, 3): (kd, kh, kw) of each tap
    offsets: np.ndarray  # (n_phases, most taps): flat offset of each tap
    tap_copy: np.ndarray  # (n_phases, most taps): the copy of the window each tap reads
    copy_shift: np.ndarray  # (copies,): each copy's shift along W
    tap_counts: np.ndarray  # (n_phases,)
    chunks: int  # stretches of positions per image
    block_parts: int  # ranges of register-tile blocks per stretch
    sub: int  # positions per sweep
    # Channels last, every channel and group of a stretch in one task (0:
    # never): stretches per image and positions per sweep.
    together_chunks: int
    together_sub: int


class ConvLayout(typing.NamedTuple):
    """Plane tables and work split of the ``conv`` kernels
    (:mod:`.correlate`)."""

    pitch: tuple  # the grid of positions (outputs and scratch) per dim
    planes: np.ndarray  # (n_planes, 3): the phase of each plane read
    plane_of: np.ndarray  # (taps,): the plane each tap reads
    offsets: np.ndarray  # (taps,): each tap's flat offset in the grid
    tap_index: np.ndarray  # (1, taps, 3): (kd, kh, kw), for the tiles' weight table
    chunks: int  # stretches of positions per image
    block_parts: int  # ranges of register-tile blocks per stretch (tiles only)
    sub: int  # positions per sweep


class FoldTable:
    """The fold of one output channel, ``(sources, counts)`` of
    :func:`.columns.fold_sources` with these arguments, worked out on first
    use: a call that the baseline computes while the columns or tap-rows
    kernels compile (:mod:`.tiering`) never needs it, nor waits for
    ``fold_sources`` to compile (about 1 s)."""

    def __init__(self, *arguments):
        self._arguments, self._tables = arguments, None

    def tables(self) -> tuple:
        """``(sources, counts)``, made once (two threads at once may both
        make them: the same tables)."""
        if self._tables is None:
            self._tables = fold_sources(*self._arguments)
        return self._tables


class ColumnsLayout(typing.NamedTuple):
    """Work split of :func:`.columns.columns_tiled`."""

    channel_block: int  # output channels per task
    image_parts: int  # ranges of images per block of channels
    k_block: int  # input channels summed per pass
    packed_k_block: int  # ... where the weights are copied
    in_place: bool  # the tiles read the weights where they are
    pitch: int  # a task's columns per position
    fold: FoldTable  # the fold of one output channel


class TapRowsLayout(typing.NamedTuple):
    """Work split of :mod:`.tap_rows`."""

    image_pitch: int  # columns per image: its positions
    tap_pitch: int  # columns per row: the batch's positions in whole tiles
    stretch_tiles: int  # tiles of positions per task of the products
    fold_chunk: int  # outputs per fold task
    fold: FoldTable  # the fold of one output channel of one image


@dataclasses.dataclass(frozen=True)
class Launch:
    """What running a rank <= 3 call needs that depends only on its shapes
    (the dispatcher keeps it for repeated calls)."""

    x_shape: tuple  # x, weight and out lifted to rank 3 by unit dims
    w_shape: tuple
    out_shape: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    groups: int
    row_chunks: int  # the row kernel's chunks (also when it is the fallback)
    last_row_parts: int  # stretches per output row of depthwise_last (channels last)
    last_row_block: int  # ... and its output rows a task
    layout: typing.Any  # the chosen kernel's own work split, or None
    multiply_adds: int  # of the whole call: long calls can be interrupted


def plan_launch(geometry, batch: int, itemsize: int, kernel: str, threads: int) -> Launch:
    """The :class:`Launch` of ``kernel`` on ``geometry`` with ``batch``
    images of ``itemsize``-byte elements (rank <= 3), for ``threads`` threads."""
    lift = (1,) * (3 - geometry.rank)
    x_shape = (batch, geometry.in_channels) + lift + geometry.in_spatial
    w_shape = (geometry.in_channels, geometry.out_channels // geometry.groups) + lift \
        + geometry.kernel
    out_shape = (batch, geometry.out_channels) + lift + geometry.out_spatial
    stride, dilation = lift + geometry.stride, lift + geometry.dilation
    pad = (0,) * len(lift) + geometry.pad_before
    rows = batch * geometry.out_channels * math.prod(out_shape[2:4])
    shapes = (x_shape, w_shape, out_shape, stride, dilation, pad, geometry.groups)
    layout = {"planes": _planes_layout, "phase_tiles": _tiled_layout,
              "column_tiles": _columns_layout, "tap_rows": _tap_rows_layout,
              "blas": blas_layout}.get(kernel)
    return Launch(*shapes, row_chunks=min(rows, config.DIRECT_CHUNKS_PER_THREAD * threads),
                  last_row_parts=_last_row_parts(out_shape, stride, threads),
                  last_row_block=_last_row_block(out_shape, threads),
                  layout=layout(*shapes, itemsize, threads) if layout else None,
                  multiply_adds=batch * geometry.flops // 2)


def plan_conv_launch(geometry, batch: int, itemsize: int, kernel: str, threads: int,
                     in_spatial: tuple, pad: tuple) -> Launch:
    """The :class:`Launch` of the ``conv`` kernel ``kernel`` for the
    adjoint ``geometry`` of a rank <= 3 ``conv`` (from the plan), reading an
    input of ``in_spatial`` padded by ``pad`` zeros before each dim."""
    lift = (1,) * (3 - geometry.rank)
    c_in, c_out, groups = geometry.out_channels, geometry.in_channels, geometry.groups
    x_shape = (batch, c_in) + lift + tuple(in_spatial)
    w_shape = (c_out, c_in // groups) + lift + geometry.kernel
    out_shape = (batch, c_out) + lift + geometry.in_spatial
    stride, dilation = lift + geometry.stride, lift + geometry.dilation
    pad = (0,) * len(lift) + tuple(pad)
    layout = _conv_layout(x_shape, w_shape, out_shape, stride, dilation, groups, itemsize,
                          threads, kernel == "conv_tiles")
    return Launch(x_shape, w_shape, out_shape, stride, dilation, pad, groups, row_chunks=0,
                  last_row_parts=0, last_row_block=1, layout=layout,
                  multiply_adds=batch * geometry.flops // 2)


def _conv_layout(x_shape, w_shape, out_shape, stride, dilation, groups, itemsize, threads,
                 tiles):
    """As :func:`_tiled_layout`: images (and groups) first, then stretches
    of at least ``TILED_MIN_POSITIONS`` positions for want of tasks or when
    an image's window of planes would pass ``TILED_WINDOW_BYTES``; for the
    tiles then ranges of blocks of output channels, and sweeps whose
    accumulators fit ``TILED_ACC_BYTES``. The planes kernel sweeps
    ``CONV_PLANES_SWEEP`` positions at a time."""
    batch, c_in_g, c_out_g = x_shape[0], w_shape[1], w_shape[0] // groups
    pitch, planes, plane_of, offsets = plane_tables(w_shape[2:], stride, dilation,
                                                    out_shape[2:])
    span = grid_span(out_shape[2:], pitch)
    # (An empty batch plans too, and launches nothing.)
    wanted = -(-config.TILED_TASKS_PER_THREAD * threads // max(batch * groups, 1))
    window = c_in_g * len(planes) * span * itemsize
    by_window = -(-window // config.TILED_WINDOW_BYTES)
    chunks = _chunks(span, int(offsets.max()), wanted, by_window,
                     -(-c_out_g // TILE_ROWS) if tiles else 1)
    longest = -(-span // chunks)
    tap_index = np.array([[(kd, kh, kw) for kd in range(w_shape[2]) for kh in range(w_shape[3])
                           for kw in range(w_shape[4])]], dtype=np.int64)
    if not tiles:
        return ConvLayout(pitch, planes, plane_of, offsets, tap_index, chunks, 1,
                          min(config.CONV_PLANES_SWEEP, longest))
    blocks = -(-c_out_g // TILE_ROWS)
    outputs = batch * groups * c_out_g * math.prod(out_shape[2:])
    block_parts = _block_parts(blocks, wanted, chunks, batch * groups, threads,
                               outputs * c_in_g * math.prod(w_shape[2:]), outputs)
    width = tile_width(itemsize)
    rows = -(-blocks // block_parts) * TILE_ROWS
    return ConvLayout(pitch, planes, plane_of, offsets, tap_index, chunks, block_parts,
                      _sweep(rows, longest, itemsize, width))


def _block_parts(blocks, wanted, chunks, images, threads, products, outputs):
    """Ranges of ``blocks`` register-tile blocks of output channels for each
    stretch of positions (``chunks`` an image, ``images`` images and
    groups): enough for ``wanted`` tasks an image, as far as the tasks keep
    ``TILED_MIN_TASK_MULTIPLY_ADDS`` of work (``products`` multiply-adds,
    an output written counting as ``TILED_OUTPUT_MULTIPLY_ADDS``; each
    range copies the same window and runs every sweep again), and one task
    a thread at least."""
    stretches = max(images * chunks, 1)
    work_tasks = ((products + config.TILED_OUTPUT_MULTIPLY_ADDS * outputs)
                  // config.TILED_MIN_TASK_MULTIPLY_ADDS)
    return max(1, min(blocks, -(-wanted // chunks),
                      max(-(-threads // stretches), work_tasks // stretches)))


def _chunks(span, halo, wanted, by_window, blocks):
    """Stretches per image of the tiled kernels: ``wanted`` tasks per image
    (or as many as keep a window within ``TILED_WINDOW_BYTES``, but none
    shorter than the ``halo`` its window adds: a big kernel's window is
    mostly halo, and copying it over and over costs more than a window
    out of L2), of at least ``TILED_MIN_POSITIONS`` positions; down to
    ``TILED_MIN_POSITIONS_CROWDED`` where threads would otherwise idle (the
    halo copied per stretch then costs less than an idle thread)."""
    by_window = min(by_window, max(1, span // max(halo, 1)))
    chunks = max(1, min(max(wanted, by_window), span // config.TILED_MIN_POSITIONS))
    if chunks * blocks < wanted:
        chunks = max(chunks, min(-(-wanted // blocks),
                                 span // config.TILED_MIN_POSITIONS_CROWDED))
    return chunks


def _whole_vector_stretches(span, lanes, chunks):
    """The stretches :func:`.tiled.direct_tiled` cuts ``span`` positions
    into, each whole vectors of ``lanes`` (the last what is left), where
    there are to be ``chunks`` at least: the fewest that leave none empty.
    (The kernel gives each of ``n`` stretches ``ceil(vectors / n)`` vectors,
    so 64 stretches of 271 vectors took 5 each and left 9 empty.)"""
    vectors = -(-span // lanes)
    if vectors < 1:
        return chunks
    count = chunks
    while count < vectors and -(-vectors // -(-vectors // count)) < chunks:
        count += 1
    return -(-vectors // -(-vectors // count))


def _last_row_parts(out_shape, stride, threads):
    """Stretches per output row of :func:`.depthwise_last.depthwise_last`:
    one, or as many as make ``TILED_TASKS_PER_THREAD`` tasks a thread where
    there are too few rows (1-D calls), none of fewer than
    ``TILED_MIN_POSITIONS_CROWDED`` outputs a phase (each copies the
    stretch of input it reads)."""
    rows = out_shape[0] * math.prod(out_shape[2:4])
    per_phase = -(-out_shape[4] // stride[2])
    wanted = config.TILED_TASKS_PER_THREAD * threads
    return max(1, min(-(-wanted // max(rows, 1)), per_phase // config.TILED_MIN_POSITIONS_CROWDED))


def _planes_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                   threads):
    tasks = x_shape[0] * out_shape[1] * out_shape[2] * stride[1]
    phase_rows = -(-out_shape[3] // stride[1])
    # Blocks of rows only when there are too few planes to share out.
    blocks = min(phase_rows, -(-config.DIRECT_CHUNKS_PER_THREAD * threads // tasks))
    return PlanesLayout(blocks, min(tasks * blocks, config.DIRECT_CHUNKS_PER_THREAD * threads))


def _last_row_block(out_shape, threads):
    """Output rows a task of :func:`.depthwise_last.depthwise_last` (the
    input rows they share are copied once): up to
    ``DEPTHWISE_LAST_ROW_BLOCK``, as many as leave
    ``TILED_TASKS_PER_THREAD`` tasks a thread."""
    rows = out_shape[0] * math.prod(out_shape[2:4])
    wanted = config.TILED_TASKS_PER_THREAD * threads
    return max(1, min(config.DEPTHWISE_LAST_ROW_BLOCK, rows // wanted))


def _tiled_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                  threads):
    """:func:`_tiled_tables`, with a copy of the input window for each
    shift of the taps along W (:func:`.tiled.phase_tables`) where the
    register tiles are whole blocks of output channels (or read one input
    channel), the call has no depth and strides W, and the rows of the
    input channels that one chunk of the tiles' pairs reads
    (:func:`.tile_products.phase_products`: every block of output channels
    sums a chunk before the next), with their copies, fit
    ``TILED_WINDOW_COPIES_MAX_BYTES``; else the window alone. (At stride 1
    every tap of a row is in the one phase, and the copies multiply the
    lines a tile reads by the kernel's width.)"""
    args = (x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize, threads)
    c_in_g = x_shape[1] // groups
    if w_shape[1] < TILE_ROWS and c_in_g > 1 or out_shape[2] > 1 or stride[2] == 1:
        return _tiled_tables(*args, 0)
    layout = _tiled_tables(*args, config.TILED_WINDOW_COPIES_MAX)
    span = phase_span(layout.phases, layout.pitch)
    halo = int(layout.offsets.max())
    fewest_taps = int(layout.tap_counts[layout.tap_counts > 0].min())
    chunk_channels = min(c_in_g, max(K_CHUNK_BYTES // (TILE_ROWS * itemsize * fewest_taps), 1))
    chunks = min(layout.chunks, layout.together_chunks or layout.chunks)
    rows = chunk_channels * (-(-span // chunks) + halo) * itemsize * layout.copy_shift.size
    if rows > config.TILED_WINDOW_COPIES_MAX_BYTES:
        return _tiled_tables(*args, 0)
    return layout


def _tiled_tables(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                  threads, copies_max):
    """Images (and groups) are the tasks first; each image is cut into
    stretches of at least ``TILED_MIN_POSITIONS`` positions when there are
    too few images for ``TILED_TASKS_PER_THREAD`` per thread, or when one
    image's input window would pass ``TILED_WINDOW_BYTES``; then, for want
    of tasks, its output channels into ranges of register-tile blocks, as
    far as the tasks keep ``TILED_MIN_TASK_MULTIPLY_ADDS`` of work each
    (one a thread at least). The window's copies, at most ``copies_max``,
    count in its bytes."""
    batch, c_in_g, c_out_g = x_shape[0], x_shape[1] // groups, w_shape[1]
    lanes = VECTOR_BYTES // itemsize
    pitch, shift_max, phases, taps, copy_shift = phase_tables(
        w_shape[2:], stride, dilation, pad, out_shape[2:], lanes, copies_max)
    most = max(max(len(t) for t in taps), 1)
    tap_index = np.zeros((len(taps), most, 3), dtype=np.int64)
    offsets = np.zeros((len(taps), most), dtype=np.int64)
    tap_copy = np.zeros((len(taps), most), dtype=np.int64)
    for ph, phase_taps in enumerate(taps):
        for t, (kd, kh, kw, offset, copy) in enumerate(phase_taps):
            tap_index[ph, t] = kd, kh, kw
            offsets[ph, t] = offset
            tap_copy[ph, t] = copy
    tap_counts = np.array([len(t) for t in taps], dtype=np.int64)
    span = phase_span(phases, pitch)
    wanted = -(-config.TILED_TASKS_PER_THREAD * threads // max(batch * groups, 1))
    # (a window's bytes count its copies)
    by_window = -(-c_in_g * span * itemsize * copy_shift.size // config.TILED_WINDOW_BYTES)
    blocks = -(-c_out_g // TILE_ROWS)
    chunks = _whole_vector_stretches(span, lanes, _chunks(span, int(offsets.max()), wanted,
                                                          by_window, blocks))
    products = batch * groups * c_in_g * c_out_g * int(
        np.dot(tap_counts, np.prod(phases[:, 3:6], axis=1)))
    block_parts = _block_parts(blocks, wanted, chunks, batch * groups, threads, products,
                               batch * groups * c_out_g * math.prod(out_shape[2:]))
    # Positions per sweep: all accumulator rows of a task fit TILED_ACC_BYTES.
    width = tile_width(itemsize)
    rows = -(-blocks // block_parts) * TILE_ROWS
    sub = _sweep(rows, -(-span // chunks), itemsize, width)
    # Channels last, a group of fewer channels than fill whole vectors
    # writes slivers of each position: every group of a stretch in one
    # task instead, its whole positions in whole vectors. So do split
    # channels of a position that ends mid cache line, where whole
    # positions still make TILED_TASKS_PER_THREAD tasks a thread: ranges
    # of its channels write parts of the same lines from two threads, in
    # tiles cut short at each range's end (r55, 5 -> 82 channels: 1.9 ->
    # 1.0 times the channels-first time).
    together_chunks = together_sub = 0
    split_lines = groups == 1 and block_parts > 1 and c_out_g * itemsize % LINE_BYTES
    if groups > 1 and c_out_g % (VECTOR_BYTES // itemsize) or split_lines:
        by_window = -(-groups * c_in_g * span * itemsize * copy_shift.size
                      // config.TILED_WINDOW_BYTES)
        wanted = -(-config.TILED_TASKS_PER_THREAD * threads // max(batch, 1))
        together_chunks = _whole_vector_stretches(
            span, lanes, _chunks(span, int(offsets.max()), wanted, by_window, 1))
        together_sub = _sweep(groups * c_out_g, -(-span // together_chunks), itemsize, width)
        if split_lines and batch * together_chunks < config.TILED_TASKS_PER_THREAD * threads:
            together_chunks = together_sub = 0
    return TiledLayout(pitch, shift_max, phases, tap_index, offsets, tap_copy, copy_shift,
                       tap_counts, chunks, block_parts, sub, together_chunks, together_sub)


def _sweep(rows, longest, itemsize, width):
    """Positions per sweep of the tiled kernels: whole tiles of ``width``,
    as many as keep ``rows`` accumulator rows within ``TILED_ACC_BYTES``
    (at least one tile), none past the ``longest`` stretch; or the whole
    stretch where that is one tile more (a last sweep of one tile would
    stream every weight again for it: dcgan_2d's complex twin in float64,
    256 positions in sweeps of 240 and 16)."""
    tiles = max(config.TILED_ACC_BYTES // (rows * itemsize) // width, 1)
    whole = -(-longest // width)
    return (whole if whole <= tiles + 1 else tiles) * width


def _task_rounds_tiles(block, parts, groups, c_out_g, taps, width, threads):
    """The rounds of column_tiles tasks (``threads`` at a time) of blocks of
    ``block`` output channels and ``parts`` ranges of images, times the
    tiles of one task: a block's columns are whole tiles of ``width``
    (output channel, tap) lanes."""
    tasks = groups * -(-c_out_g // block) * parts
    return -(-tasks // threads) * -(-block * taps // width)


def _few_channel_split(batch, groups, fitting, c_out_g, taps, width, threads):
    """``(channel_block, image_parts)`` of a column_tiles call with too few
    output channels for ``COLUMNS_TASKS_PER_THREAD`` tasks a thread, or
    too few whose columns fit L2 to fill a tile.

    A block's columns are whole tiles of ``width`` (output channel, tap)
    lanes, so its size decides the lanes wasted (one channel of 25 taps
    fills 25 of 48; 5 channels of 9 taps 45), and the images can be split
    into ranges instead. Of every block (at most ``most_channels``) and
    split, the one whose rounds of tasks times the largest task's tiles and
    images is least; of those, the one nearest
    ``COLUMNS_IMAGE_TASKS_PER_THREAD`` tasks a thread (a second task a
    thread evens out a noisy machine), and then the one with fewer tasks.
    A block of ``parts`` ranges has at most ``fitting(parts)`` channels.
    """
    wanted = threads * config.COLUMNS_IMAGE_TASKS_PER_THREAD
    most_parts = min(batch, threads * config.COLUMNS_TASKS_PER_THREAD)
    best = None
    for block in range(1, min(c_out_g, fitting(most_parts)) + 1):
        for parts in range(1, most_parts + 1):
            if block > fitting(parts):
                continue
            tasks = groups * -(-c_out_g // block) * parts
            cost = _task_rounds_tiles(block, parts, groups, c_out_g, taps, width, threads)
            key = (cost * -(-batch // parts), abs(tasks - wanted), tasks)
            if best is None or key < best[0]:
                best = key, block, parts
    return best[1], best[2]


def _whole_tile_block(most, groups, c_out_g, taps, width, threads):
    """The output channels per column_tiles task, from ``most`` down to half
    of it, whose rounds of tasks times a task's tiles
    (:func:`_task_rounds_tiles`) are least; of equals, the most: 16
    channels of 16 taps fill 6 tiles of 48 with 5.33 tiles' work, 12 fill
    4 (256 -> 256 channels on two 4x4 images, through a plan: 418 -> 378
    us)."""
    return min(range(most, (most + 1) // 2 - 1, -1),
               key=lambda block: _task_rounds_tiles(block, 1, groups, c_out_g, taps, width,
                                                    threads))


def _columns_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                    threads):
    """In place (at most ``COLUMNS_IN_PLACE_MAX_POSITIONS`` positions in the
    batch, or ``COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS`` with weights of
    ``COLUMNS_IN_PLACE_LARGE_WEIGHT_BYTES`` or more):
    ``COLUMNS_IN_PLACE_TASKS_PER_THREAD`` tasks per thread and
    ``COLUMNS_IN_PLACE_K_BLOCK`` input channels per block. Packed: output
    channels per task so that there are ``COLUMNS_TASKS_PER_THREAD`` tasks
    per thread (or a few less, where they fill whole tiles:
    :func:`_whole_tile_block`), and input channels per block so that a
    block's packed weights fit ``COLUMNS_PACK_BYTES``; with fewer output
    channels than that, ranges of images instead, ``COLUMNS_IMAGE_TASKS_PER_THREAD``
    tasks per thread. Either way a task's columns fit
    ``COLUMNS_TASK_COLUMN_BYTES`` (and ``WORKSPACE_BYTES``) where one output
    channel's do."""
    batch, positions = x_shape[0], math.prod(x_shape[2:])
    split = _columns_split(batch, x_shape[1] // groups, w_shape[1], groups, positions,
                           math.prod(w_shape[2:]), itemsize, threads)
    return ColumnsLayout(*split, FoldTable(
        batch, w_shape[2:], out_shape[2:], x_shape[2:], stride, dilation, pad,
        column_rows(batch * positions, VECTOR_BYTES // itemsize)))


@functools.lru_cache(maxsize=64)
def columns_parts_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                         threads):
    """:func:`_columns_layout` of a complex call run on its parts (the
    ``complex_parts`` of :func:`.columns.columns_tiled`), from the rank-3
    shapes of its real twin's :class:`Launch` (twice the channels each
    way) and its parts' ``itemsize``: the matrix product of the real views,
    a position per part of each input position and a column per part of
    each weight, folded by the complex geometry's sources (rows of the
    parts' positions). Kept per shape and thread count (a twin's route is
    kept per thread count too)."""
    batch, positions = x_shape[0], math.prod(x_shape[2:])
    twin_c_in_g, taps = x_shape[1] // groups, math.prod(w_shape[2:])
    split = _columns_split(batch, twin_c_in_g // 2, w_shape[1] // 2, groups, 2 * positions,
                           2 * taps, itemsize, threads)
    return ColumnsLayout(*split, FoldTable(
        batch, w_shape[2:], out_shape[2:], x_shape[2:], stride, dilation, pad,
        column_rows(2 * batch * positions, VECTOR_BYTES // itemsize)))


def _columns_split(batch, c_in_g, c_out_g, groups, positions, taps, itemsize, threads):
    """The ``(channel_block, image_parts, k_block, packed_k_block, in_place,
    pitch)`` of :func:`_columns_layout` (see there) for ``positions`` a
    image and ``taps`` columns an output channel."""
    weight_bytes = c_in_g * c_out_g * groups * taps * itemsize
    in_place = (batch * positions <= config.COLUMNS_IN_PLACE_MAX_POSITIONS
                or (batch * positions <= config.COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS
                    and weight_bytes >= config.COLUMNS_IN_PLACE_LARGE_WEIGHT_BYTES))
    tasks_per_thread = (config.COLUMNS_IN_PLACE_TASKS_PER_THREAD if in_place
                        else config.COLUMNS_TASKS_PER_THREAD)
    per_task = -(-c_out_g * groups // (threads * tasks_per_thread))
    image_parts = 1

    def fitting(parts):
        """Output channels whose columns of ``parts``-th of the images fit."""
        rows = -(-(-(-batch // parts) * positions) // TILE_POSITIONS) * TILE_POSITIONS
        return max(1, min(config.WORKSPACE_BYTES, config.COLUMNS_TASK_COLUMN_BYTES)
                   // (rows * taps * itemsize))

    width = tile_width(itemsize)
    few = not in_place and c_out_g * groups < threads * tasks_per_thread
    # Where the columns that fit fill less than two tiles (a complex 549 ->
    # 190 k4 s2 call's parts on 8 58x5 images: one channel's 32 columns in
    # a tile of 48, 5.4 times its real time; with a 2 MiB L2 two channels'
    # 64 columns in two tiles, and whole tiles took one): ranges of images,
    # whose columns fit more.
    thin = not in_place and not few and fitting(1) * taps < 2 * width
    if few or thin:
        # See _few_channel_split.
        per_task, image_parts = _few_channel_split(batch, groups, fitting, c_out_g, taps, width,
                                                   threads)
    channel_block = max(1, min(c_out_g, per_task, fitting(image_parts)))
    if not (in_place or few or thin):
        channel_block = _whole_tile_block(channel_block, groups, c_out_g, taps, width, threads)
    tiles = -(-channel_block * taps // width)
    packed_k_block = max(1, min(c_in_g, config.COLUMNS_PACK_BYTES // (tiles * width * itemsize)))
    k_block = min(c_in_g, config.COLUMNS_IN_PLACE_K_BLOCK) if in_place else packed_k_block
    # In place a task's tiles may start up to a vector before its weights.
    lanes = VECTOR_BYTES // itemsize
    lead_room = lanes - 1 if in_place and c_out_g * taps % lanes == 0 else 0
    pitch = -(-(channel_block * taps + lead_room) // width) * width
    return channel_block, image_parts, max(1, k_block), packed_k_block, in_place, pitch


@functools.lru_cache(maxsize=64)
def tap_rows_parts_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                          threads):
    """:func:`_tap_rows_layout` of a complex call run on the real views of
    its arrays (``real_views.ran_on_real_views``), from the rank-3 shapes of
    its real twin's :class:`Launch` and its parts' ``itemsize``: a
    position per part of each input position (the fold's sources those of
    the complex geometry). Kept per shape and thread count, as
    :func:`columns_parts_layout`."""
    return _tap_rows_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups,
                            itemsize, threads, parts=2)


def _tap_rows_layout(x_shape, w_shape, out_shape, stride, dilation, pad, groups, itemsize,
                     threads, parts=1):
    """Columns of the batch's positions in whole tiles (``parts`` a
    position); the products in
    stretches of at most ``TAP_ROWS_STRETCH_TILES`` tiles, fewer where
    that leaves under ``TILED_TASKS_PER_THREAD`` tasks per thread; the
    fold in ``TILED_TASKS_PER_THREAD`` tasks per thread of equal outputs,
    fewer where that would leave under ``TAP_ROWS_FOLD_MIN_CHUNK`` a task
    (:func:`.tap_rows.tap_rows_fold` cuts each to an image)."""
    batch, c_out = x_shape[0], out_shape[1]
    width = tile_width(itemsize)
    image_pitch = parts * math.prod(x_shape[2:])
    tiles = -(-batch * image_pitch // width)
    wanted = threads * config.TILED_TASKS_PER_THREAD
    stretch_tiles = max(1, min(config.TAP_ROWS_STRETCH_TILES,
                               groups * tiles // wanted))
    chunk = max(config.TAP_ROWS_FOLD_MIN_CHUNK,
                -(-batch * c_out * math.prod(out_shape[2:]) // wanted))
    # Rows of columns an odd number of cache lines apart (simd.window_pitch):
    # a tile writes one stretch to each of up to 9 rows.
    tap_pitch = tiles * width + (64 // itemsize if tiles * width * itemsize % 128 == 0 else 0)
    return TapRowsLayout(image_pitch, tap_pitch, stretch_tiles, chunk, FoldTable(
        1, w_shape[2:], out_shape[2:], x_shape[2:], stride, dilation, pad, tap_pitch))
