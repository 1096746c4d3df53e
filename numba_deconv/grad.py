"""Gradients with respect to the weight: ``conv_weight_grad`` and
``conv_transpose_weight_grad``.

Both are correlations of the input with the gradient of the output, summed
over the batch and the output positions. Real finite data of rank <= 3
runs on register-tiled kernels (:mod:`numba_deconv.cpu.weight_grad`);
complex data, rank >= 4 and inputs that are not finite take one matrix
product per tap and group through NumPy's BLAS, of the output gradient
with the input window that tap reads. The gradients with
respect to the *input* are the other function: ``conv_transpose(grad_output,
weight, ...)`` for ``conv`` (with ``output_size`` = the input's size) and
``conv(grad_output, weight, ...)`` for ``conv_transpose``, with the same
stride, padding, dilation, groups and ``padding_mode``.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np

from . import _dispatch, _padding
from ._params import _check_groups as check_groups
from ._params import int_tuple
from ._plan import as_array, check_numeric
from .cpu.weight_grad_launch import weight_grad
from ._typing import ArrayLike, DataFormat, Ints, Padding, PaddingMode


def conv_weight_grad(x: ArrayLike, grad_output: ArrayLike, kernel_size: Ints, *,
                     stride: Ints = 1, padding: Padding = 0, dilation: Ints = 1,
                     groups: int = 1, padding_mode: PaddingMode = "zeros",
                     data_format: DataFormat = "channels_first") -> np.ndarray:
    """The gradient of ``conv(x, weight, ...)`` with respect to ``weight``.

    Equal to what PyTorch's autograd gives for ``conv{1,2,3}d`` (with the
    input padded by ``padding_mode`` as ``Conv2d`` does) given the upstream
    gradient ``grad_output``::

        grad[co, ci, k] = sum over n, o of grad_output[n, co, o] * conj(xpad[n, ci, o*s + k*d])

    (``ci`` in the group of ``co``; ``conj`` matters for complex data only,
    PyTorch's convention). The gradient with respect to ``x`` is
    ``conv_transpose(grad_output, weight, ..., output_size=<x's spatial
    size>)`` with the same arguments.

    Parameters
    ----------
    x : array_like
        The input of the convolution, ``(N, C_in, *spatial)`` (or
        ``data_format="channels_last"``; unbatched when ``kernel_size`` is
        a sequence, which then fixes the number of spatial dims).
    grad_output : array_like
        The gradient of the result, shaped like ``conv``'s result.
    kernel_size : int or sequence of int
    stride, padding, dilation, groups, padding_mode, data_format
        As for :func:`numba_deconv.conv`.

    Returns
    -------
    numpy.ndarray
        ``(C_out, C_in/groups, *kernel_size)``, like the weight.

    Raises
    ------
    ValueError, TypeError
        For malformed arguments, or a ``grad_output`` that is not shaped
        like the convolution's result.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> numba_deconv.conv_weight_grad(x, np.ones((1, 1, 3)), 3)
    array([[[3., 6., 9.]]])
    """
    x, grad_output, kernel, c_in, c_out = _arguments(x, grad_output, kernel_size, groups,
                                                     data_format)
    # The dispatcher's memo: a repeated call shape skips every check.
    plan = _dispatch.conv_call(x.shape, x.dtype, (c_out, c_in // groups) + kernel,
                               grad_output.dtype, None, (stride, padding, dilation, groups,
                                                         padding_mode, data_format)).plan
    _check_grad_shape(grad_output, plan)
    g = plan.geometry
    x_cf, gy_cf = _channels_first(x, plan), _channels_first(grad_output, plan)
    return _correlate(gy_cf, x_cf, tuple(zip(g.pad_before, g.pad_after)), padding_mode,
                      g.kernel, g.stride, g.dilation, groups)


def conv_transpose_weight_grad(x: ArrayLike, grad_output: ArrayLike, kernel_size: Ints, *,
                               stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                               dilation: Ints = 1, groups: int = 1,
                               padding_mode: PaddingMode = "zeros",
                               data_format: DataFormat = "channels_first") -> np.ndarray:
    """The gradient of ``conv_transpose(x, weight, ...)`` with respect to ``weight``.

    Equal to what PyTorch's autograd gives for ``conv_transpose{1,2,3}d``
    given the upstream gradient ``grad_output``::

        grad[ci, co, k] = sum over n, i of conj(x[n, ci, i]) * gpad[n, co, i*s + k*d]

    where ``gpad`` is ``grad_output`` padded by ``padding`` in
    ``padding_mode`` (the adjoint of the fold that a padding mode applies).
    The gradient with respect to ``x`` is ``conv(grad_output, weight, ...)``
    with the same arguments.

    Parameters
    ----------
    x : array_like
        The input of the transposed convolution, ``(N, C_in, *spatial)``.
    grad_output : array_like
        The gradient of the result, shaped like ``conv_transpose``'s result.
    kernel_size : int or sequence of int
    stride, padding, output_padding, dilation, groups, padding_mode, data_format
        As for :func:`numba_deconv.conv_transpose`.

    Returns
    -------
    numpy.ndarray
        ``(C_in, C_out/groups, *kernel_size)``, like the weight.

    Raises
    ------
    ValueError, TypeError
        For malformed arguments, or a ``grad_output`` that is not shaped
        like the transposed convolution's result.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> x = np.array([[[1.0, 2.0]]])
    >>> g = np.arange(5.0).reshape(1, 1, 5)   # the result is 5 long at stride 2
    >>> numba_deconv.conv_transpose_weight_grad(x, g, 3, stride=2)
    array([[[ 4.,  7., 10.]]])
    """
    x, grad_output, kernel, c_in, c_out = _arguments(x, grad_output, kernel_size, groups,
                                                     data_format)
    plan = _dispatch.cpu_call(x.shape, x.dtype, (c_in, c_out // groups) + kernel,
                              grad_output.dtype, None,
                              (stride, padding, output_padding, dilation, groups, None,
                               padding_mode, data_format)).plan
    _check_grad_shape(grad_output, plan)
    g = plan.geometry
    x_cf, gy_cf = _channels_first(x, plan), _channels_first(grad_output, plan)
    # sum conj(x) * gpad = conj(sum x * conj(gpad)): the correlation of
    # conv's weight gradient, with x as the output gradient.
    grad = _correlate(x_cf, gy_cf, tuple(zip(g.pad_before, g.pad_after)), padding_mode,
                      g.kernel, g.stride, g.dilation, groups)
    return grad.conj() if grad.dtype.kind == "c" else grad


def _arguments(x, grad_output, kernel_size, groups, data_format):
    """The arrays, the kernel size as a tuple and both channel counts,
    checked as far as they can be before the call is planned."""
    x, grad_output = as_array("x", x), as_array("grad_output", grad_output)
    check_numeric("x", x.dtype)
    check_numeric("grad_output", grad_output.dtype)
    rank, kernel = _kernel_size(kernel_size, x, grad_output)
    c_in = _channels(x, rank, data_format)
    c_out = _channels(grad_output, rank, data_format)
    _check_groups(groups, c_in, c_out)
    return x, grad_output, kernel, c_in, c_out


def _kernel_size(kernel_size, x, grad_output):
    if x.ndim != grad_output.ndim:
        raise ValueError(
            f"x has {x.ndim} dims and grad_output {grad_output.ndim}; both are (N, C, "
            f"*spatial) or both unbatched")
    if isinstance(kernel_size, (tuple, list)):
        rank = len(kernel_size)
        if x.ndim not in (rank + 1, rank + 2):
            raise ValueError(
                f"kernel_size={kernel_size!r} has {rank} entries, one per spatial dim, so "
                f"x needs {rank + 2} dims (batched) or {rank + 1} (unbatched); x has "
                f"shape {x.shape}")
    else:
        rank = x.ndim - 2  # an int: batched inputs
    if rank < 1:
        raise ValueError(
            f"x has shape {x.shape}; with kernel_size={kernel_size!r} it needs at least 3 "
            f"dims (N, C, *spatial), or pass one kernel size per spatial dim")
    return rank, int_tuple("kernel_size", kernel_size, rank, minimum=1)


def _channels(array, rank, data_format):
    """The channel count, wherever the layout puts it (checked later)."""
    if array.ndim not in (rank + 1, rank + 2):
        return -1  # plan_conv/plan_call report the rank mismatch
    return array.shape[-1] if data_format == "channels_last" else array.shape[
        array.ndim - rank - 1]


def _check_groups(groups, c_in, c_out):
    check_groups(groups)  # an int >= 1, before anything divides by it
    for name, count in (("x", c_in), ("grad_output", c_out)):
        if count >= 0 and count % groups:
            raise ValueError(f"groups={groups} must divide the {count} channels of {name}")


def _check_grad_shape(grad_output, plan):
    if tuple(grad_output.shape) != plan.out_shape:
        raise ValueError(
            f"grad_output has shape {tuple(grad_output.shape)}; the result of the call "
            f"has shape {plan.out_shape}")


def _channels_first(array, plan):
    batched = array if plan.batched else array[np.newaxis]
    if plan.channels_last:
        batched = np.moveaxis(batched, -1, 1)
    return batched.astype(plan.dtype, copy=False)


def _correlate(a, src, pairs, mode, kernel, stride, dilation, groups):
    """``grad[ca, cs, k] = sum over n, o of a[n, ca, o] * conj(src[n, cs,
    o*s + k*d])`` for the channels ``ca``, ``cs`` of one group, as
    ``(Ca, Cs/groups, *kernel)``; ``a`` is ``(N, Ca, *O)``, ``src`` ``(N,
    Cs, *S)`` padded by ``pairs`` in ``mode``, with ``S >= (O - 1)*s +
    d*(k - 1) + 1`` padded (taps reading past that would only meet zero
    padding and are left at zero, as they are never reached).

    Real data of rank <= 3 with a finite ``src`` runs on the register tiles
    of :mod:`numba_deconv.cpu.weight_grad` (which pad with zeros as they
    lay ``src`` out); the rest as one BLAS product per tap."""
    # A finite sum means finite elements (the rare overflow takes BLAS).
    if (a.dtype.kind == "f" and len(kernel) <= 3 and a.size and src.size
            and np.isfinite(src.sum())):
        if mode != "zeros":
            src, pairs = _padding.pad(src, pairs, mode), ((0, 0),) * len(kernel)
        return weight_grad(np.ascontiguousarray(a), np.ascontiguousarray(src),
                                  tuple(before for before, _ in pairs), kernel, stride,
                                  dilation, groups, len(kernel), numba.get_num_threads())
    src = _padding.pad(src, pairs, mode)
    n, c_a = a.shape[:2]
    c_s = src.shape[1]
    out = a.shape[2:]
    positions = int(np.prod(out))
    # (groups, Ca/groups, N*O): the left factor of every tap's product,
    # conjugated once: sum a * conj(src) = conj(sum conj(a) * src).
    left = np.ascontiguousarray(
        a.reshape(n, groups, c_a // groups, positions).transpose(1, 2, 0, 3)
    ).reshape(groups, c_a // groups, n * positions)
    complex_data = a.dtype.kind == "c"
    if complex_data:
        left = left.conj()
    grad = np.zeros((groups, c_a // groups, c_s // groups) + tuple(kernel), a.dtype)
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, s, o in zip(tap, dilation, stride, out))
        part = src[window]
        if part.shape[2:] != out:  # this tap reads past the source: no product
            continue
        right = np.ascontiguousarray(
            part.reshape(n, groups, c_s // groups, positions).transpose(1, 2, 0, 3)
        ).reshape(groups, c_s // groups, n * positions)
        with np.errstate(invalid="ignore", over="ignore"):
            grad[(slice(None),) * 3 + tap] = np.matmul(left, right.swapaxes(1, 2))
    grad = grad.reshape((c_a, c_s // groups) + tuple(kernel))
    return grad.conj() if complex_data else grad
