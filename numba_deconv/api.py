"""The public ``conv_transpose``: arrays in, arrays out.

Checks and planning live in :mod:`numba_deconv._plan`, the choice of device
and kernel in :mod:`numba_deconv._dispatch`; here the arrays are brought to
the kernels' layout and the result back to the caller's.
"""

from __future__ import annotations

import numpy as np

from . import _dispatch, _outputs
from ._plan import as_array, check_out
from .cpu import driver


def conv_transpose(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                   dilation=1, groups=1, output_size=None, padding_mode="zeros",
                   data_format="channels_first", device="auto", out=None):
    """Transposed convolution (deconvolution) of ``x`` with ``weight``.

    Computes, for every input position ``i`` and kernel tap ``k`` (per
    spatial dim), with ``ci`` an input channel of group ``g``::

        y[n, g*Cout_g + co, i*s + k*d - pad_before] += x[n, ci, i] * weight[ci, co, k]

    then adds ``bias``. The kernel is not flipped: this is what PyTorch's
    ``conv_transpose{1,2,3}d``, TensorFlow's ``conv2d_transpose`` and ONNX
    ``ConvTranspose`` compute. Per spatial dim the output size is
    ``(I - 1)*s - pad_before - pad_after + d*(k - 1) + 1 + output_padding``.

    Parameters
    ----------
    x : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; with
        ``data_format="channels_last"`` ``(N, *spatial, C_in)`` or
        ``(*spatial, C_in)``.
    weight : array_like
        ``(C_in, C_out/groups, *kernel)``, the PyTorch/ONNX layout; its rank
        fixes the number of spatial dims ``n = weight.ndim - 2`` (any n >= 1).
    bias : array_like, optional
        ``(C_out,)``, added to every output position of its channel.
    stride, dilation : int or sequence of n ints, >= 1
    padding : int, sequence, "valid" or "same"
        An int, one int per dim, one ``(before, after)`` pair per dim, "valid"
        (no padding) or "same" (output = input * stride, TensorFlow/ONNX
        SAME_UPPER: total ``max(d*(k-1) + 1 - s, 0)``, ``total // 2`` before).
    output_padding : int or sequence of n ints
        Extra size at the end of each dim, ``0 <= output_padding < max(s, d)``.
    groups : int
        Input and output channels split into ``groups`` independent groups.
    output_size : sequence of int, optional
        The wanted spatial output size (or the full output shape); picks
        the output padding. Must lie in the reachable range.
    padding_mode : {"zeros"}
    data_format : {"channels_first", "channels_last"}
    device : {"auto", "cpu", "cuda"}
        "auto" runs where the data lives.
    out : numpy.ndarray, optional
        Preallocated result of the right shape and dtype; filled and returned.

    Returns
    -------
    numpy.ndarray
        The result, in ``x``'s format, of dtype ``numpy.result_type`` of the
        inputs (integers and bools compute in float64, float16 in float32).

    Raises
    ------
    ValueError, TypeError
        For any inconsistent or malformed argument, before any computation.
    RuntimeError
        For ``device="cuda"`` when no CUDA GPU is usable.

    Examples
    --------
    The TensorFlow worked example (VALID, stride 2): the first element is
    ``-67 * -1``, the kernel is not flipped.

    >>> import numpy as np, numba_deconv
    >>> x = np.array([[[[-67., -77.], [-117., -127.]]]])
    >>> w = np.array([[[[-1., 2., -3.], [4., -5., 6.], [-7., 8., -9.]]]])
    >>> y = numba_deconv.conv_transpose(x, w, stride=2)
    >>> y.shape
    (1, 1, 5, 5)
    >>> y[0, 0]
    array([[   67.,  -134.,   278.,  -154.,   231.],
           [ -268.,   335.,  -710.,   385.,  -462.],
           [  586.,  -770.,  1620.,  -870.,  1074.],
           [ -468.,   585., -1210.,   635.,  -762.],
           [  819.,  -936.,  1942., -1016.,  1143.]])
    """
    args = (stride, padding, output_padding, dilation, groups, output_size, padding_mode,
            data_format)
    plain_numpy = (device == "auto" and type(x) is np.ndarray and type(weight) is np.ndarray
                   and (bias is None or type(bias) is np.ndarray) and out is None)
    if not plain_numpy and _dispatch.select_device(device, x, weight, bias, out) == "cuda":
        from .cuda.backend import conv_transpose_cuda

        return conv_transpose_cuda(
            x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
            dilation=dilation, groups=groups, output_size=output_size,
            padding_mode=padding_mode, data_format=data_format, out=out)

    x = as_array("x", x)
    weight = as_array("weight", weight)
    bias = None if bias is None else as_array("bias", bias)
    call = _dispatch.cpu_call(x, weight, bias, args)
    plan = call.plan
    if out is not None:
        check_out(out, plan)

    geometry, dtype = plan.geometry, plan.dtype
    x_cf = x if plan.batched else x[np.newaxis]
    if plan.channels_last:
        x_cf = np.moveaxis(x_cf, -1, 1)
    x_cf = _kernel_ready(x_cf, dtype)
    w_k = _kernel_ready(weight, dtype)
    bias_k = call.no_bias if bias is None else _kernel_ready(bias, dtype)

    cf_shape = (plan.batch, geometry.out_channels) + geometry.out_spatial
    direct_out = (out is not None and not plan.channels_last
                  and out.flags.c_contiguous
                  and not any(np.may_share_memory(out, a) for a in (x, weight, bias)
                              if a is not None))
    result = (out.reshape(cf_shape) if direct_out
              else _outputs.new_output(cf_shape, dtype, call.out_bytes))

    if plan.batch:
        driver.run(call.route(), x_cf, w_k, bias_k, result, geometry)

    if plan.channels_last:
        result = np.moveaxis(result, 1, -1)
    if not plan.batched:
        result = result[0]
    if out is None:
        return np.ascontiguousarray(result) if plan.channels_last else result
    if not direct_out:
        out[...] = result
    return out


def _kernel_ready(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, native byte order, writable, in the working dtype.

    Writable matters: Numba types read-only arrays differently and would
    compile a second copy of every kernel.
    """
    flags = array.flags
    if array.dtype == dtype and flags.c_contiguous and flags.writeable:
        return array
    ready = np.ascontiguousarray(array, dtype=dtype)
    if not ready.flags.writeable:
        ready = ready.copy()
    return ready
