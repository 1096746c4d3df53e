"""The weight gradients on the host: the rank-3 view of the operands,
blocks of images, the task split of :mod:`.weight_grad`'s kernels, and on
a cold cache the baseline that stands in for them (:mod:`.tiering`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _compiled, config
from . import tiering
from .correlate import grid_span, plane_tables
from .driver import compile_kernel, kernel_signatures
from .launch import parallel_prange
from .simd import VECTOR_BYTES
from .weight_grad import PAIRS, TILE, weight_dots, weight_tiles


def weight_grad(a, src, pad, kernel, stride, dilation, groups, rank, threads) -> np.ndarray:
    """``grad[ca, cs, k] = sum over n, o of a[n, ca, o] * xpad[n, cs, o*s +
    k*d]`` for the channels of one group, as ``(Ca, Cs/groups, *kernel)``,
    by :mod:`.weight_grad`'s kernels: ``a`` (N, Ca, *O) and ``src`` (N, Cs,
    *S), rank-``rank`` (<= 3), real and C-contiguous, ``src`` finite,
    ``xpad`` it with ``pad`` zeros before each dim (and enough after).

    ``weight_tiles`` (channels of ``a`` in vectors) given a vector's worth
    of them per group, else ``weight_dots``; images go as many at a time
    as fit ``WEIGHT_GRAD_BLOCK_BYTES``, and the pairs are split for
    ``TILED_TASKS_PER_THREAD`` tasks per thread.
    """
    lift = (1,) * (3 - rank)
    n_batch, c_a, c_s = a.shape[0], a.shape[1], src.shape[1]
    a3 = a.reshape((n_batch, c_a) + lift + a.shape[2:])
    src3 = src.reshape((n_batch, c_s) + lift + src.shape[2:])
    kernel3, stride3, dilation3 = lift + tuple(kernel), lift + tuple(stride), lift + tuple(
        dilation)
    pad3 = (0,) * len(lift) + tuple(pad)
    pitch, planes, plane_of, offsets = plane_tables(kernel3, stride3, dilation3, a3.shape[2:])
    c_a_g, pairs = c_a // groups, c_s // groups * len(offsets)
    itemsize = a.dtype.itemsize
    lanes = VECTOR_BYTES // itemsize
    span = grid_span(a3.shape[2:], pitch)
    b_len = span + int(offsets.max())
    tiles = c_a_g >= lanes
    multiply_adds = a.size * (c_s // groups) * math.prod(kernel)
    kernel_name = "weight_tiles" if tiles else "weight_dots"
    variant = ("cpu", rank, a.dtype, "channels_first", "gather", kernel_name)
    if tiles:
        c_room = -(-c_a_g // lanes) * lanes
        per_image = (groups * c_room * span + c_s * len(planes) * b_len) * itemsize
    else:
        a_len = -(-span // lanes) * lanes
        b_len = a_len + int(offsets.max())
        per_image = (c_a * a_len + c_s * len(planes) * b_len) * itemsize
    images = max(1, min(n_batch, config.WEIGHT_GRAD_BLOCK_BYTES // per_image))
    tables = (planes, plane_of, offsets, pitch, pad3, stride3)
    grad = tiering.weight_grad_stand_in(
        kernel_name, variant, a3, src3, tables, groups, images,
        span if tiles else a_len, b_len, tiles, multiply_adds, compile_kernel, kernel_signatures)
    if grad is None:
        _compiled.ensure(variant, compile_kernel, kernel_name, a.dtype)
    if grad is None and tiles:
        pairs_room = -(-pairs // PAIRS) * PAIRS
        splits = -(-config.TILED_TASKS_PER_THREAD * threads // groups)
        pair_block = max(PAIRS, min(-(-pairs_room // splits // PAIRS) * PAIRS,
                                    config.WEIGHT_GRAD_PAIR_BLOCK))
        grad = np.zeros((groups, pairs_room, c_room), dtype=a.dtype)
        parallel_prange(weight_tiles, a3, src3, *tables, groups, images, pair_block, grad,
                        multiply_adds=multiply_adds)
    elif grad is None:
        a_block = min(-(-c_a_g // TILE) * TILE, config.WEIGHT_GRAD_A_BLOCK)
        splits = -(-config.TILED_TASKS_PER_THREAD * threads // (groups * -(-c_a_g // a_block)))
        pair_block = max(TILE, min(-(-pairs // splits // TILE) * TILE,
                                   config.WEIGHT_GRAD_PAIR_BLOCK))
        grad = np.zeros((groups, c_a_g, pairs), dtype=a.dtype)
        parallel_prange(weight_dots, a3, src3, *tables, groups, images, a_block, pair_block,
                        grad, multiply_adds=multiply_adds)
    if tiles:  # (groups, pairs, channels of a) as the tiles sum them
        grad = grad[:, :pairs, :c_a_g].transpose(0, 2, 1)
    return np.ascontiguousarray(grad).reshape((c_a, c_s // groups) + tuple(kernel))

