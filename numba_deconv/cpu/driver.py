"""Host side of the CPU backend: choose a strategy, shape the arrays, launch.

Arrays reaching :func:`run` are already checked and laid out by
``numba_deconv.api``: channels first, batched, C-contiguous, writable, all in
the working dtype.

Strategies
----------
``direct``
    :func:`~numba_deconv.cpu.kernels.direct_rows` reads ``x`` and ``w``
    directly; best for few channels per group (depthwise, single-channel
    images).
``gemm``
    Per image and block of output channels, one matrix product
    ``cols = W^T @ X`` through BLAS (every product of the definition, none
    wasted on inserted zeros), then :func:`~numba_deconv.cpu.kernels.col2im`
    folds the columns into that block of the output. The tasks run in our
    own threads, one per Numba thread, with BLAS held to one thread so that
    two thread pools never fight over the cores (see ``_blas``). Workspace:
    one task's columns per thread.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .. import config
from ._blas import single_threaded_blas
from .kernels import col2im, direct_rows, direct_rows_serial

STRATEGIES = ("direct", "gemm")


def choose_strategy(geometry) -> str:
    """The strategy the heuristic picks for this geometry."""
    in_per_group = geometry.in_channels // geometry.groups
    columns = geometry.out_channels // geometry.groups * math.prod(geometry.kernel)
    if in_per_group >= config.GEMM_MIN_IN_CHANNELS and columns >= config.GEMM_MIN_COLUMNS:
        return "gemm"
    return "direct"


def _multiply_adds(geometry, batch: int) -> int:
    return batch * geometry.flops // 2


def run(x, w, bias, out, geometry, strategy: str) -> None:
    """Compute into ``out`` (N, C_out, *O) from ``x`` (N, C_in, *I)."""
    if geometry.rank > 3:
        _run_by_leading_slices(x, w, bias, out, geometry, strategy)
        return
    lift = 3 - geometry.rank
    x3 = x.reshape(x.shape[:2] + (1,) * lift + x.shape[2:])
    w3 = w.reshape(w.shape[:2] + (1,) * lift + w.shape[2:])
    out3 = out.reshape(out.shape[:2] + (1,) * lift + out.shape[2:])
    stride = (1,) * lift + geometry.stride
    dilation = (1,) * lift + geometry.dilation
    pad = (0,) * lift + geometry.pad_before
    if strategy == "direct":
        rows = math.prod(out3.shape[:-1])
        threads = numba.get_num_threads()
        if threads == 1 or _multiply_adds(geometry, x.shape[0]) < config.SERIAL_MAX_MULTIPLY_ADDS:
            direct_rows_serial(x3, w3, bias, out3, geometry.groups, stride, dilation, pad)
        else:
            chunks = min(rows, config.DIRECT_CHUNKS_PER_THREAD * threads)
            direct_rows(x3, w3, bias, out3, geometry.groups, stride, dilation, pad, chunks)
    else:
        _gemm(x3, w3, bias, out3, geometry.groups, stride, dilation, pad)


_pool = None


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(numba.config.NUMBA_NUM_THREADS - 1, 1),
                                   thread_name_prefix="numba_deconv")
    return _pool


def _gemm(x, w, bias, out, groups, stride, dilation, pad) -> None:
    n_batch, c_in = x.shape[:2]
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    c_in_g, c_out_g = c_in // groups, w.shape[1]
    taps = math.prod(kernel)
    # W^T per group, (groups, C_out_g*K, C_in_g), contiguous for BLAS.
    w_t = np.ascontiguousarray(
        w.reshape(groups, c_in_g, c_out_g * taps).transpose(0, 2, 1))
    threads = numba.get_num_threads()
    # Split output channels only when images x groups give too few tasks.
    splits = min(c_out_g, -(-threads // (n_batch * groups)))
    bounds = [c_out_g * b // splits for b in range(splits + 1)]
    tasks = [(n, g, bounds[b], bounds[b + 1])
             for n in range(n_batch) for g in range(groups) for b in range(splits)]

    def work(my_tasks):
        cols = np.empty((bounds[1] + c_out_g % splits) * taps * math.prod(in_spatial),
                        dtype=x.dtype)
        for n, g, c0, c1 in my_tasks:
            block = cols[:(c1 - c0) * taps * math.prod(in_spatial)].reshape(
                (c1 - c0) * taps, -1)
            np.matmul(w_t[g, c0 * taps:c1 * taps],
                      x[n, g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g, -1), out=block)
            first = g * c_out_g
            col2im(block.reshape((c1 - c0,) + kernel + in_spatial),
                   bias[first + c0:first + c1], out[n, first + c0:first + c1],
                   stride, dilation, pad)

    shares = [tasks[t::threads] for t in range(min(threads, len(tasks)))]
    with single_threaded_blas():
        pending = [_worker_pool().submit(work, share) for share in shares[1:]]
        work(shares[0])
        for future in pending:
            future.result()


def _drop_leading_dim(geometry):
    return dataclasses.replace(geometry, **{
        f.name: getattr(geometry, f.name)[1:]
        for f in dataclasses.fields(geometry)
        if isinstance(getattr(geometry, f.name), tuple)})


def _run_by_leading_slices(x, w, bias, out, geometry, strategy) -> None:
    """Rank >= 4: sum rank-(n-1) transposed convolutions over the first dim.

    Input slice ``i`` through kernel slice ``k`` lands on output slice
    ``i*s + k*d - pad_before``; the sum runs in a fixed order, so the result
    is deterministic.
    """
    inner = _drop_leading_dim(geometry)
    s, d, p = geometry.stride[0], geometry.dilation[0], geometry.pad_before[0]
    out_size = geometry.out_spatial[0]
    x_slices = np.ascontiguousarray(np.moveaxis(x, 2, 0))
    w_slices = np.ascontiguousarray(np.moveaxis(w, 2, 0))
    no_bias = np.zeros_like(bias)
    partial = np.empty(out.shape[:2] + out.shape[3:], dtype=out.dtype)
    out[...] = bias.reshape((-1,) + (1,) * geometry.rank)
    for k in range(geometry.kernel[0]):
        for i in range(geometry.in_spatial[0]):
            o = i * s + k * d - p
            if 0 <= o < out_size:
                run(x_slices[i], w_slices[k], no_bias, partial, inner, strategy)
                out[:, :, o] += partial
