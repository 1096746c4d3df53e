"""Data in and out of the channels-first real kernels, in parallel.

The kernels compute channels first; a ``data_format="channels_last"`` call
has its input and its result transposed around them. NumPy's transposing
copy runs on one thread at a few GB/s; :func:`swap_last_two` runs in
parallel tiles that stay in L1, transposed in vector shuffles. The phase
tiles read and write channels-last data themselves, through
:func:`transpose_block`.

Complex data that runs as its real twin (``numba_deconv._dispatch.real_twin``)
has its real and imaginary parts split into channels of their own and
merged back (:func:`move_parts`): NumPy's ``.real``
and ``.imag`` copies read and write every other element on one thread,
and took longer than the twin's arithmetic (signal_1d in complex64: 6.8 ms
to split, 12.6 ms to merge, 22 ms to compute).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import _outputs
from . import simd
from .launch import parallel

#: Elements per side of a tile: 32 x 32 elements of either array share L1.
BLOCK = 32


def same_order(channels: int, spatial: tuple) -> bool:
    """Whether (N, C, *S) and (N, *S, C) lay out the same memory order: one
    channel or one position, so a reshape swaps them."""
    return channels == 1 or math.prod(spatial) == 1


def to_channels_first(x: np.ndarray) -> np.ndarray:
    """(N, *S, C) C-contiguous -> (N, C, *S) C-contiguous, transposed in
    parallel; a reshape where one channel or one position leaves the
    memory order as it is."""
    shape = (x.shape[0], x.shape[-1]) + x.shape[1:-1]
    if same_order(x.shape[-1], x.shape[1:-1]):
        return x.reshape(shape)
    first = np.empty(shape, x.dtype)
    if first.size:
        parallel(swap_last_two, x.reshape(x.shape[0], -1, x.shape[-1]),
                 first.reshape(x.shape[0], x.shape[-1], -1))
    return first


def channels_first_room(last: np.ndarray) -> np.ndarray:
    """(N, C, *S) room for the channels-first twin of ``last`` (N, *S, C):
    ``last`` itself reshaped where one channel or one position leaves the
    memory order as it is, else uninitialised, recycled where large."""
    shape = (last.shape[0], last.shape[-1]) + last.shape[1:-1]
    if same_order(last.shape[-1], last.shape[1:-1]):
        return last.reshape(shape)
    return _outputs.new_output(shape, last.dtype, last.nbytes)


def to_channels_last(first: np.ndarray, last: np.ndarray | None = None) -> np.ndarray:
    """(N, C, *S) C-contiguous -> ``last`` (N, *S, C), C-contiguous, a new
    one when None, transposed in parallel (or reshaped where one channel or
    one position needs no move); returns ``last``."""
    shape = (first.shape[0],) + first.shape[2:] + (first.shape[1],)
    if same_order(first.shape[1], first.shape[2:]):
        if last is None:
            return first.reshape(shape)
        if not np.may_share_memory(first, last):  # (channels_first_room's own view)
            last[...] = first.reshape(shape)
        return last
    if last is None:
        last = _outputs.new_output(shape, first.dtype, first.nbytes)
    if last.size:
        n_batch, channels = first.shape[:2]
        parallel(swap_last_two, first.reshape(n_batch, channels, -1),
                 last.reshape(n_batch, -1, channels))
    return last


@njit(nogil=True, cache=True)
def transpose_block(source, src_at, src_step, target, dst_at, dst_step, rows, cols):
    """``target[dst_at + j*dst_step + i] = source[src_at + i*src_step + j]``
    for ``i < rows``, ``j < cols`` (flat float32/float64 arrays): transposed
    tiles of a vector square (:func:`.simd.transpose_tile`), the ragged
    edges element by element. Every row of a tile is read, and every row
    of its transpose written, in one vector."""
    lanes = simd.lanes(source)
    full_rows, full_cols = rows // lanes * lanes, cols // lanes * lanes
    for i0 in range(0, full_rows, lanes):
        for j0 in range(0, full_cols, lanes):
            simd.transpose_tile(source, src_at + i0 * src_step + j0, src_step, target,
                                dst_at + j0 * dst_step + i0, dst_step)
    for i in range(rows):
        for j in range(full_cols if i < full_rows else 0, cols):
            target[dst_at + j * dst_step + i] = source[src_at + i * src_step + j]


def _swap_block(source, target, src_at, src_step, dst_at, dst_step, rows, cols, tile):
    """:func:`transpose_block` for any dtype (``tile``: room for ``BLOCK``
    x ``BLOCK`` elements). Jitted code only."""
    raise NotImplementedError("_swap_block is for jitted code")


@overload(_swap_block, inline="always")
def _swap_block_for(source, target, src_at, src_step, dst_at, dst_step, rows, cols, tile):
    if source.dtype in (types.float32, types.float64):
        def in_vectors(source, target, src_at, src_step, dst_at, dst_step, rows, cols, tile):
            transpose_block(source, src_at, src_step, target, dst_at, dst_step, rows, cols)
        return in_vectors

    def through_buffer(source, target, src_at, src_step, dst_at, dst_step, rows, cols, tile):
        # Each row of source read and each row of target written in one
        # contiguous run (written straight across, a tile's rows of target
        # stay open at once, and rows a power of two apart -- 4096
        # positions -- share too few cache sets for that).
        for i in range(rows):
            for j in range(cols):
                tile[j * BLOCK + i] = source[src_at + i * src_step + j]
        for j in range(cols):
            for i in range(rows):
                target[dst_at + j * dst_step + i] = tile[j * BLOCK + i]
    return through_buffer


@njit(nogil=True, cache=True)
def swap_last_two(src, dst, claimed, cancel):
    """``dst[n, j, i] = src[n, i, j]``: ``src`` (N, A, B), ``dst`` (N, B, A),
    both C-contiguous, in tiles of ``BLOCK`` x ``BLOCK``; a task kernel
    (:func:`.launch.parallel`), a tile per task: float32/float64 in vector
    shuffles (:func:`transpose_block`), other dtypes through a buffer."""
    n_batch, a, b = src.shape
    blocks_a, blocks_b = -(-a // BLOCK), -(-b // BLOCK)
    tasks = n_batch * blocks_a * blocks_b
    source, target = src.reshape(-1), dst.reshape(-1)
    tile = np.empty(BLOCK * BLOCK, dtype=src.dtype)
    while True:
        task = simd.claim(claimed)
        if task >= tasks or simd.cancelled(cancel):
            break
        block_b = task % blocks_b
        block_a = (task // blocks_b) % blocks_a
        n = task // (blocks_a * blocks_b)
        i0, j0 = block_a * BLOCK, block_b * BLOCK
        _swap_block(source, target, (n * a + i0) * b + j0, b, (n * b + j0) * a + i0, a,
                    min(a - i0, BLOCK), min(b - j0, BLOCK), tile)


@njit(nogil=True, cache=True)
def move_parts(pairs, parts, merge, claimed, cancel):
    """``parts[m, 0, c, s], parts[m, 1, c, s] = pairs[m, c, 2s], pairs[m, c,
    2s + 1]`` (or, with ``merge``, the other way): ``pairs`` (M, C, 2S) is a
    complex array's real view (real and imaginary parts side by side),
    ``parts`` (M, 2, C, S); both C-contiguous. A task kernel
    (:func:`.launch.parallel`), a row ``(m, c)`` per task."""
    n_rows, channels, twice = pairs.shape
    size = twice // 2
    paired, split = pairs.reshape(-1), parts.reshape(-1)
    while True:
        row = simd.claim(claimed)
        if row >= n_rows * channels or simd.cancelled(cancel):
            break
        real = (row // channels * 2 * channels + row % channels) * size
        imag = real + channels * size
        first = row * twice
        if merge:
            for s in range(size):
                paired[first + 2 * s] = split[real + s]
                paired[first + 2 * s + 1] = split[imag + s]
        else:
            for s in range(size):
                split[real + s] = paired[first + 2 * s]
                split[imag + s] = paired[first + 2 * s + 1]
