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
    Per image, one matrix product ``cols = W^T @ X`` through BLAS (every
    product of the definition, none wasted on inserted zeros), then
    :func:`~numba_deconv.cpu.kernels.col2im_rows` folds the columns into the
    output. Workspace: one image's columns.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import config
from .kernels import col2im_rows, direct_rows

STRATEGIES = ("direct", "gemm")


def choose_strategy(geometry) -> str:
    """The strategy the heuristic picks for this geometry."""
    in_per_group = geometry.in_channels // geometry.groups
    columns = geometry.out_channels // geometry.groups * math.prod(geometry.kernel)
    if in_per_group >= config.GEMM_MIN_IN_CHANNELS and columns >= config.GEMM_MIN_COLUMNS:
        return "gemm"
    return "direct"


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
        direct_rows(x3, w3, bias, out3, geometry.groups, stride, dilation, pad)
    else:
        _gemm(x3, w3, bias, out3, geometry.groups, stride, dilation, pad)


def _gemm(x, w, bias, out, groups, stride, dilation, pad) -> None:
    n_batch, c_in = x.shape[:2]
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    c_in_g, c_out_g = c_in // groups, w.shape[1]
    columns = c_out_g * math.prod(kernel)
    # W^T per group, (groups, C_out_g*K, C_in_g), contiguous for BLAS.
    w_t = np.ascontiguousarray(
        w.reshape(groups, c_in_g, columns).transpose(0, 2, 1))
    cols = np.empty((groups, columns, math.prod(in_spatial)), dtype=x.dtype)
    cols_7d = cols.reshape((groups * c_out_g,) + kernel + in_spatial)
    for n in range(n_batch):
        np.matmul(w_t, x[n].reshape(groups, c_in_g, -1), out=cols)
        col2im_rows(cols_7d, bias, out[n], stride, dilation, pad)


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
