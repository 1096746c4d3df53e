"""Channels-last data in and out of the channels-first kernels.

The kernels compute channels first; a ``data_format="channels_last"`` call
has its input and its result transposed around them. NumPy's transposing
copy runs on one thread at a few GB/s; :func:`swap_last_two` runs in
parallel tiles that stay in L1, at about memory speed.
"""

from numba import njit

from . import simd

#: Elements per side of a tile: 32 x 32 elements of either array share L1.
BLOCK = 32


@njit(nogil=True, cache=True)
def swap_last_two(src, dst, claimed, cancel):
    """``dst[n, j, i] = src[n, i, j]``: ``src`` (N, A, B), ``dst`` (N, B, A),
    both C-contiguous, in tiles of ``BLOCK`` x ``BLOCK``; a task kernel
    (:func:`.launch.parallel`), a tile per task."""
    n_batch, a, b = src.shape
    blocks_a, blocks_b = -(-a // BLOCK), -(-b // BLOCK)
    tasks = n_batch * blocks_a * blocks_b
    while True:
        task = simd.claim(claimed)
        if task >= tasks or simd.cancelled(cancel):
            break
        block_b = task % blocks_b
        block_a = (task // blocks_b) % blocks_a
        n = task // (blocks_a * blocks_b)
        for i in range(block_a * BLOCK, min(a, (block_a + 1) * BLOCK)):
            for j in range(block_b * BLOCK, min(b, (block_b + 1) * BLOCK)):
                dst[n, j, i] = src[n, i, j]
