"""Data in and out of the channels-first real kernels, in parallel.

The kernels compute channels first; a ``data_format="channels_last"`` call
has its input and its result transposed around them. NumPy's transposing
copy runs on one thread at a few GB/s; :func:`swap_last_two` runs in
parallel tiles that stay in L1, transposed in vector shuffles. The phase
tiles read and write channels-last data themselves, through
:func:`transpose_block`.

Complex data that runs as its real twin (``numba_deconv._dispatch.real_twin``)
has its real and imaginary parts split into channels of their own and
merged back (:func:`move_parts`, in vector shuffles) where its kernel
cannot read and write the complex arrays itself: NumPy's ``.real`` and
``.imag`` copies read and write every other element on one thread, and
took longer than the twin's arithmetic (signal_1d in complex64: 6.8 ms to
split, 12.6 ms to merge, 22 ms to compute).
"""

from __future__ import annotations

import math

import numpy as np
from numba import from_dtype, njit, types
from numba.extending import overload

from .. import _outputs
from . import atomics, simd, tiering
from .kernels import interleave_parts
from .launch import parallel, serial

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
        _swap(x.reshape(x.shape[0], -1, x.shape[-1]), first.reshape(x.shape[0], x.shape[-1], -1))
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
        _swap(first.reshape(n_batch, channels, -1), last.reshape(n_batch, -1, channels),
              may_start=True)
    return last


#: Elements below which a transpose stays on the calling thread.
#: Why: on two threads the transposes took 22 us where one took 2.5 (4096
#: elements), and 1.0-6x one thread's time from 16 Ki to 1 Mi elements
#: (float32, 7-144 channels); 0.8x at 4 Mi (benchmarks/TUNING.md). A
#: channels-last call of 4 -> 144 channels on a 2 x 2 image took 80 us
#: against 17 channels first.
_PARALLEL_MIN_TRANSPOSE = 1 << 20


def _swap(src, dst, may_start=False):
    """:func:`swap_last_two` from ``src`` into ``dst``, on the calling
    thread where there is too little to share; NumPy's transposing copy
    (the same values) while a helper process compiles it
    (:func:`_by_numpy`)."""
    if _by_numpy("transposes", src.dtype, may_start):
        dst[...] = src.transpose(0, 2, 1)
        return
    if src.size >= _PARALLEL_MIN_TRANSPOSE:
        parallel(swap_last_two, src, dst)
    else:
        serial(swap_last_two, src, dst)


#: The ``(kernel, dtype)`` of :func:`swap_last_two` (``"transposes"``) and
#: :func:`move_parts` (``"parts"``) that run compiled: loaded, on disk, or
#: compiled in place where no helper may compile them.
_READY = set()


def _by_numpy(kernel, dtype, may_start) -> bool:
    """Whether NumPy moves ``dtype`` data now in the stead of ``kernel``
    (the same values): where the kernel would have to compile (0.6-1 s), a
    helper process compiles it (:mod:`.tiering`), started by an output's
    move (``may_start``) once no other helper runs. A cold first call
    compiles the baseline in place while a helper compiles the tuned
    kernel; a third compile beside those two on two cores gained nothing
    (benchmarks/TUNING.md), and a call whose tuned kernel reads and writes
    the data where they lie never needs these."""
    if (kernel, dtype) in _READY:  # (the check of every warm call)
        return False
    start = may_start and not tiering.helpers_running()
    if tiering.compiling_in_helper(kernel, dtype, move_signatures, "NumPy's copies", start):
        return True
    _READY.add((kernel, dtype))
    return False


def move_signatures(kernel: str, dtype) -> list:
    """The ``(dispatcher, signature)`` of :func:`swap_last_two`
    (``kernel`` ``"transposes"``) or :func:`move_parts` (``"parts"``, for
    the complex ``dtype``'s parts) as this module calls them."""
    tasks = (types.Array(types.int64, 1, "C"), types.Array(types.uint8, 1, "C"))
    if kernel == "transposes":
        array = types.Array(from_dtype(np.dtype(dtype)), 3, "C")
        return [(swap_last_two, (array, array) + tasks)]
    real = from_dtype(np.empty(0, dtype).real.dtype)
    return [(move_parts, (types.Array(real, 2, "C"), types.Array(real, 3, "C"), types.boolean)
             + tasks)]


#: Elements below which splitting or merging complex parts stays on the
#: calling thread (waking the pool costs tens of microseconds).
_PARALLEL_MIN_PARTS = 1 << 16


def to_parts(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) complex -> (N, 2C, *S) real, its real twin's channels:
    channel ``2c`` the real parts of channel ``c``, ``2c + 1`` its
    imaginary parts."""
    a = np.ascontiguousarray(a)
    parts = np.empty((a.shape[0], 2 * a.shape[1]) + a.shape[2:], a.real.dtype)
    _move_parts(a, parts, merge=False)
    return parts


def parts_room(a: np.ndarray) -> np.ndarray:
    """Room for the twin channels (:func:`to_parts`) of the complex ``a``,
    uninitialised, recycled where large."""
    shape = (a.shape[0], 2 * a.shape[1]) + a.shape[2:]
    return _outputs.new_output(shape, a.real.dtype, a.nbytes)


def from_parts(parts: np.ndarray, a: np.ndarray) -> None:
    """The complex ``a`` (N, C, *S), C-contiguous, from its twin channels
    ``parts`` (N, 2C, *S) (:func:`to_parts`)."""
    _move_parts(a, parts, merge=True)


def _move_parts(complex_array, parts, merge):
    """:func:`move_parts` between ``complex_array`` and its twin channels,
    on the calling thread where there is too little to share; NumPy's
    copies (the same values) while a helper process compiles it
    (:func:`_by_numpy`)."""
    rows = complex_array.shape[0] * complex_array.shape[1]
    size = math.prod(complex_array.shape[2:])
    if not rows * size:
        return
    args = (complex_array.view(parts.dtype).reshape(rows, 2 * size),
            parts.reshape(rows, 2, size), merge)
    if _by_numpy("parts", complex_array.dtype, may_start=merge):
        pairs, split = args[0].reshape(rows, size, 2), args[1]
        if merge:
            pairs[...] = split.transpose(0, 2, 1)
        else:
            split[...] = pairs.transpose(0, 2, 1)
        return
    if complex_array.size >= _PARALLEL_MIN_PARTS:
        parallel(move_parts, *args)
    else:
        serial(move_parts, *args)


@njit(nogil=True, cache=True, _nrt=False)
def transpose_block(source, src_at, src_step, target, dst_at, dst_step, rows, cols):
    """``target[dst_at + j*dst_step + i] = source[src_at + i*src_step + j]``
    for ``i < rows``, ``j < cols`` (flat float32/float64 arrays): transposed
    tiles of a vector square (:func:`.simd.transpose_tile`), the ragged
    edges in part tiles (:func:`.simd.transpose_tile_part`). Every row of a
    tile is read, and every row of its transpose written, in one vector
    (element by element, the ragged edges made most of a channels-last
    window of 4 channels)."""
    lanes = simd.lanes(source)
    for i0 in range(0, rows, lanes):
        for j0 in range(0, cols, lanes):
            src, dst = src_at + i0 * src_step + j0, dst_at + j0 * dst_step + i0
            if i0 + lanes <= rows and j0 + lanes <= cols:
                simd.transpose_tile(source, src, src_step, target, dst, dst_step)
            else:
                simd.transpose_tile_part(source, src, src_step, target, dst, dst_step,
                                         min(lanes, rows - i0), min(lanes, cols - j0))


@njit(inline="always")
def _store_rows(target, at, step, vectors):
    """Vector ``c`` of ``vectors`` to ``target[at + c * step:]``."""
    for c in range(len(vectors)):
        simd.store(target, at + c * step, vectors[c])


@njit(nogil=True, cache=True, _nrt=False)
def channels_to_rows(source, src_at, src_step, target, dst_at, dst_step, positions, channels):
    """:func:`transpose_block` of ``positions`` rows of ``channels`` (a
    channels-last input's positions to a row per channel). Where the rows
    hold those channels alone (``src_step == channels``): one is a copy;
    and where there are 2, 3, 4 or 8, whole vectors of positions go in
    :func:`.simd.load_ways`: transposed part tiles of so few channels took
    a quarter of a call (8 -> 2 channels k2 s2 d3, 1.15 times the
    channels-first time)."""
    lanes = simd.lanes(source)
    done = 0
    if src_step == channels and (channels <= 4 or channels == 8):
        done = positions // lanes * lanes
        for p in range(0, done, lanes):
            at = src_at + p * channels
            if channels == 1:  # a copy
                simd.store(target, dst_at + p, simd.load(source, at))
            elif channels == 2:
                _store_rows(target, dst_at + p, dst_step, simd.load_ways(source, at, 2))
            elif channels == 3:
                _store_rows(target, dst_at + p, dst_step, simd.load_ways(source, at, 3))
            elif channels == 4:
                _store_rows(target, dst_at + p, dst_step, simd.load_ways(source, at, 4))
            else:
                _store_rows(target, dst_at + p, dst_step, simd.load_ways(source, at, 8))
    if done < positions:
        transpose_block(source, src_at + done * src_step, src_step, target, dst_at + done,
                        dst_step, positions - done, channels)


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
    (:func:`.launch.parallel`): float32/float64 in vector shuffles
    (:func:`transpose_block`), other dtypes through a buffer. A task takes
    a tile, or where A or B is short (few channels) a run of tiles along
    the other of about ``BLOCK * BLOCK`` elements (a tile a task, 6
    channels of 140 000 positions made 35 000 tasks of 192 elements, and
    the transposes took four times the kernel's time)."""
    n_batch, a, b = src.shape
    blocks_a, blocks_b = -(-a // BLOCK), -(-b // BLOCK)
    # Tiles per task along the longer side, where the other is short.
    run = max(1, BLOCK // max(min(a, b, BLOCK), 1))
    run_a, run_b = (run, 1) if a > b else (1, run)
    runs_a, runs_b = -(-blocks_a // run_a), -(-blocks_b // run_b)
    tasks = n_batch * runs_a * runs_b
    source, target = src.reshape(-1), dst.reshape(-1)
    tile = np.empty(BLOCK * BLOCK, dtype=src.dtype)
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        first_b = task % runs_b * run_b
        first_a = task // runs_b % runs_a * run_a
        n = task // (runs_a * runs_b)
        for block_a in range(first_a, min(first_a + run_a, blocks_a)):
            for block_b in range(first_b, min(first_b + run_b, blocks_b)):
                i0, j0 = block_a * BLOCK, block_b * BLOCK
                _swap_block(source, target, (n * a + i0) * b + j0, b, (n * b + j0) * a + i0,
                            a, min(a - i0, BLOCK), min(b - j0, BLOCK), tile)


@njit(inline="always")
def split_parts(pairs, at, parts, first, part_stride, count):
    """``parts[first + p*part_stride + j] = pairs[at + 2*j + p]`` for ``j <
    count``, ``p < 2`` (flat float32/float64 arrays): a stretch of complex
    values to its real and imaginary parts, in vector shuffles."""
    lanes = simd.lanes(parts)
    whole = count // lanes * lanes
    for j in range(0, whole, lanes):
        real, imag = simd.load_ways(pairs, at + 2 * j, 2)
        simd.store(parts, first + j, real)
        simd.store(parts, first + part_stride + j, imag)
    for j in range(whole, count):
        parts[first + j] = pairs[at + 2 * j]
        parts[first + part_stride + j] = pairs[at + 2 * j + 1]


@njit(nogil=True, cache=True)
def move_parts(pairs, parts, merge, claimed, cancel):
    """``parts[m, p, s] = pairs[m, 2s + p]`` (or, with ``merge``, the other
    way): ``pairs`` (M, 2S) is a complex array's real view (real and
    imaginary parts side by side), ``parts`` (M, 2, S) its real twin's
    channels (see ``numba_deconv._dispatch.real_twin``); both C-contiguous,
    float32/float64. A task kernel (:func:`.launch.parallel`), a row
    ``m`` per task."""
    n_rows, twice = pairs.shape
    size = twice // 2
    paired, split = pairs.reshape(-1), parts.reshape(-1)
    while True:
        row = atomics.claim(claimed)
        if row >= n_rows or atomics.cancelled(cancel):
            break
        if merge:
            interleave_parts(split, row * twice, size, paired, row * twice, size)
        else:
            split_parts(paired, row * twice, split, row * twice, size, size)
