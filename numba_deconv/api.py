"""The public ``conv_transpose``: argument checks, layout, device dispatch.

Everything here runs before any kernel: a bad argument is reported as a
``ValueError`` or ``TypeError`` that names it, never as a Numba typing
error. The checks work on shapes and dtypes only, so the CUDA backend
shares them (:func:`plan_call`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import _dispatch, _outputs
from ._params import Geometry, resolve_geometry
from .cpu import driver

DATA_FORMATS = ("channels_first", "channels_last")
PADDING_MODES = ("zeros",)
LATER_PADDING_MODES = ("circular", "reflect", "replicate")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CallPlan:
    """A checked call: geometry, working dtype and the result's shape."""

    geometry: Geometry
    dtype: np.dtype
    batched: bool
    channels_last: bool
    batch: int
    out_shape: tuple


def working_dtype(*dtypes) -> np.dtype:
    """The dtype a call computes in: numpy promotion, then ints and bools
    to float64 and float16 to float32.

    Raises ``TypeError`` for extended precision, which has no kernels.
    """
    dtype = np.result_type(*dtypes)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.name not in _dispatch.DTYPES:
        raise TypeError(
            f"inputs of dtype {dtype} are not supported; use float32, float64, "
            f"complex64 or complex128 (e.g. .astype(np.float64))")
    return dtype


def check_numeric(name: str, dtype: np.dtype) -> None:
    """Reject non-numeric dtypes (object, strings, datetimes, structured)."""
    if dtype.kind not in "biufc":
        raise TypeError(
            f"{name} has dtype {dtype}, which is not numeric; pass a float or "
            f"complex array (e.g. {name}.astype(np.float32))")


def plan_call(x_shape, x_dtype, w_shape, w_dtype, bias_shape, bias_dtype, *,
              stride, padding, output_padding, dilation, groups, output_size,
              padding_mode, data_format) -> CallPlan:
    """Check one call from shapes and dtypes alone and plan its result."""
    check_numeric("x", x_dtype)
    check_numeric("weight", w_dtype)
    if bias_dtype is not None:
        check_numeric("bias", bias_dtype)
    if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format={data_format!r} is not a data format; use "
            f"'channels_first' (N, C, *spatial) or 'channels_last' (N, *spatial, C)")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        later = (" is not supported yet" if padding_mode in LATER_PADDING_MODES
                 else " is not a padding mode")
        raise ValueError(
            f"padding_mode={padding_mode!r}{later}; supported: "
            f"{', '.join(repr(m) for m in PADDING_MODES)}")
    if len(w_shape) < 3:
        raise ValueError(
            f"weight has shape {tuple(w_shape)}; expected at least 3 dims "
            f"(C_in, C_out/groups, *kernel)")
    rank = len(w_shape) - 2
    if len(x_shape) not in (rank + 1, rank + 2):
        raise ValueError(
            f"x has shape {tuple(x_shape)} ({len(x_shape)} dims); a weight of shape "
            f"{tuple(w_shape)} is for rank-{rank} convolution, which needs x with "
            f"{rank + 2} dims (batched) or {rank + 1} (unbatched)")
    batched = len(x_shape) == rank + 2
    channels_last = data_format == "channels_last"
    sample = tuple(x_shape[1:]) if batched else tuple(x_shape)
    if channels_last:
        in_channels, in_spatial = sample[-1], sample[:-1]
    else:
        in_channels, in_spatial = sample[0], sample[1:]
    batch = x_shape[0] if batched else 1
    geometry = resolve_geometry(
        in_spatial, in_channels, tuple(w_shape), stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=_spatial_output_size(output_size, rank, batched, channels_last,
                                         batch, int(w_shape[1]) * groups
                                         if isinstance(groups, int) else None))
    if bias_shape is not None and tuple(bias_shape) != (geometry.out_channels,):
        raise ValueError(
            f"bias has shape {tuple(bias_shape)}; expected ({geometry.out_channels},), "
            f"one value per output channel")
    sample_out = ((geometry.out_spatial + (geometry.out_channels,)) if channels_last
                  else ((geometry.out_channels,) + geometry.out_spatial))
    out_shape = ((batch,) + sample_out) if batched else sample_out
    dtypes = [x_dtype, w_dtype] + ([] if bias_dtype is None else [bias_dtype])
    return CallPlan(geometry, working_dtype(*dtypes), batched, channels_last,
                    batch, out_shape)


def _spatial_output_size(output_size, rank, batched, channels_last, batch, out_channels):
    """Accept spatial sizes or the full output shape; return spatial sizes."""
    if output_size is None or isinstance(output_size, (int, np.integer)):
        return output_size
    try:
        sizes = tuple(output_size)
    except TypeError:
        return output_size  # resolve_geometry reports the type
    full = rank + (2 if batched else 1)
    if len(sizes) != full:
        return sizes
    sample = sizes[1:] if batched else sizes
    spatial = sample[:-1] if channels_last else sample[1:]
    channels = sample[-1] if channels_last else sample[0]
    if (batched and sizes[0] != batch) or (out_channels is not None and channels != out_channels):
        raise ValueError(
            f"output_size={sizes} is a full output shape whose batch or channel "
            f"size does not match the call (batch {batch}, {out_channels} output "
            f"channels); pass the {rank} spatial sizes or a matching full shape")
    return spatial


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
    plain_numpy = (device == "auto" and type(x) is np.ndarray and type(weight) is np.ndarray
                   and (bias is None or type(bias) is np.ndarray) and out is None)
    target = "cpu" if plain_numpy else _select_device(device, x, weight, bias, out)
    if target == "cuda":
        from .cuda.backend import conv_transpose_cuda

        return conv_transpose_cuda(
            x, weight, bias, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, padding_mode=padding_mode,
            data_format=data_format, out=out)

    x = _as_array("x", x)
    weight = _as_array("weight", weight)
    bias = None if bias is None else _as_array("bias", bias)
    call = _cpu_call(x, weight, bias, (
        stride, padding, output_padding, dilation, groups, output_size,
        padding_mode, data_format))
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
        driver.run(x_cf, w_k, bias_k, result, geometry, call.strategy, call.prepare,
                   call.launch)

    if plan.channels_last:
        result = np.moveaxis(result, 1, -1)
    if not plan.batched:
        result = result[0]
    if out is None:
        return np.ascontiguousarray(result) if plan.channels_last else result
    if not direct_out:
        out[...] = result
    return out


# Checked calls, for calls whose arguments are plain ints, strings, None and
# tuples of them (so that 2.0 or True can never hit the plan of 2 or 1): a
# repeated small call skips all argument checking.
_CALLS: dict = {}
_CALLS_MAX = 4096
_ARG_NAMES = ("stride", "padding", "output_padding", "dilation", "groups",
              "output_size", "padding_mode", "data_format")


def _is_plain(value) -> bool:
    kind = type(value)
    if kind is int or kind is str or value is None:
        return True
    if kind is not tuple:
        return False
    for item in value:
        if not _is_plain(item):
            return False
    return True


@dataclass(frozen=True)
class _CpuCall:
    """A checked plan with what the CPU path derives from it once."""

    plan: CallPlan
    strategy: str
    prepare: functools.partial  # compiles/records a kernel of the strategy
    no_bias: np.ndarray  # zeros, the bias when none is given (never written)
    launch: object  # driver.Launch, or None for rank >= 4
    out_bytes: int  # of the channels-first result


def _cpu_call(x, weight, bias, args: tuple) -> _CpuCall:
    key = (x.shape, x.dtype, weight.shape, weight.dtype,
           None if bias is None else (bias.shape, bias.dtype)) + args
    plain = _is_plain(args)
    if plain:
        call = _CALLS.get(key)
        if call is not None:
            return call
    plan = plan_call(
        x.shape, x.dtype, weight.shape, weight.dtype,
        None if bias is None else bias.shape, None if bias is None else bias.dtype,
        **dict(zip(_ARG_NAMES, args)))
    strategy = driver.choose_strategy(plan.geometry, plan.batch, plan.dtype)
    call = _CpuCall(
        plan=plan, strategy=strategy,
        prepare=functools.partial(_dispatch.ensure_compiled, "cpu", plan.geometry.rank,
                                  plan.dtype, _layout(plan), strategy),
        no_bias=np.zeros(plan.geometry.out_channels, plan.dtype),
        launch=(driver.launch_for(plan.geometry, plan.batch)
                if plan.geometry.rank <= 3 else None),
        out_bytes=(plan.batch * plan.geometry.out_channels * math.prod(plan.geometry.out_spatial)
                   * plan.dtype.itemsize))
    if plain and len(_CALLS) < _CALLS_MAX:
        _CALLS[key] = call
    return call


def _layout(plan: CallPlan) -> str:
    return "channels_last" if plan.channels_last else "channels_first"


def _as_array(name: str, value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if is_device_array(value):
        raise TypeError(
            f"{name} is a GPU array but device='cpu' was asked for; use "
            f"device='auto' or 'cuda', or copy it to the host first")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} cannot be read as a numeric array: {err}") from None
    return array


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


def check_out(out, plan: CallPlan) -> None:
    """Validate a NumPy ``out=`` array against the planned result."""
    if not isinstance(out, np.ndarray):
        raise TypeError(
            f"out must be a numpy.ndarray of shape {plan.out_shape} and dtype "
            f"{plan.dtype}; got {type(out).__name__}")
    check_out_metadata(out.shape, out.dtype, plan)
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writable array")


def check_out_metadata(shape, dtype, plan: CallPlan) -> None:
    """Shape and dtype checks of ``out=`` shared by the CPU and CUDA paths."""
    if tuple(shape) != plan.out_shape:
        raise ValueError(
            f"out has shape {tuple(shape)}; the result has shape {plan.out_shape}")
    if np.dtype(dtype) != plan.dtype:
        raise TypeError(
            f"out has dtype {np.dtype(dtype)}; the result has dtype {plan.dtype} "
            f"(the promoted dtype of the inputs)")


def is_device_array(value) -> bool:
    """A GPU array: ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or a
    Numba device array, including the CUDA simulator's, which has none."""
    return value is not None and (
        getattr(value, "__cuda_ndarray__", False) is True
        or hasattr(value, "__cuda_array_interface__"))


def _select_device(device, *arrays) -> str:
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'")
    if device == "cpu":
        return "cpu"
    on_gpu = any(is_device_array(a) for a in arrays)
    if device == "auto":
        return "cuda" if on_gpu else "cpu"
    return "cuda"
