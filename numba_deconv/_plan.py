"""Call planning: every check a call needs, from shapes and dtypes alone.

The leaf that every front end and backend imports (downward only): the
argument checks, the working dtype, the result's shape and where an array
lives. Nothing here runs a kernel, so a bad argument is always reported as
a ``ValueError`` or ``TypeError`` that names it, before any computation,
and the CPU and CUDA paths report it identically.

Foreign arrays are met here too (:func:`foreign_arrays`): PyTorch tensors
(read through ``detach()``, so gradients never flow through a call),
``out=`` buffers that NumPy views without a copy, and xarray DataArrays,
whose labels are put back on the result. Their libraries are never
imported: a type is looked for only when its module is already loaded.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ._params import Geometry, resolve_conv_geometry, resolve_geometry

DTYPES = ("float32", "float64", "complex64", "complex128")
LAYOUTS = DATA_FORMATS = ("channels_first", "channels_last")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CallPlan:
    """A checked call: geometry, working dtype and the result's shape.

    For ``conv`` the geometry is that of its adjoint transposed convolution
    (from the convolution's output back to its input), whose weight is the
    convolution's own.
    """

    geometry: Geometry
    dtype: np.dtype
    batched: bool
    channels_last: bool
    batch: int
    out_shape: tuple
    padding_mode: str = "zeros"

    @property
    def layout(self) -> str:
        return "channels_last" if self.channels_last else "channels_first"


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
    if dtype.name not in DTYPES:
        raise TypeError(
            f"inputs of dtype {dtype} are not supported; use float32, float64, "
            f"complex64 or complex128 (e.g. .astype(np.float64))")
    return dtype


def dtype_argument(dtype, name: str = "dtype") -> np.dtype:
    """A ``dtype=`` argument as a NumPy dtype the kernels compute in (or
    that promotes to one: ints, bools, float16), or an error naming it."""
    try:
        dtype = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}={dtype!r} is not a NumPy dtype ({err}); use one of "
            f"{', '.join(DTYPES)}") from None
    if dtype.kind not in "biufc" or (dtype.kind in "fc"
                                     and dtype.name not in DTYPES + ("float16",)):
        raise TypeError(f"{name}={dtype} is not supported; use one of {', '.join(DTYPES)}")
    return dtype


def check_numeric(name: str, dtype: np.dtype) -> None:
    """Reject non-numeric dtypes (object, strings, datetimes, structured)."""
    if dtype.kind not in "biufc":
        raise TypeError(
            f"{name} has dtype {dtype}, which is not numeric; pass a float or "
            f"complex array (e.g. {name}.astype(np.float32))")


def _check_call(x_shape, x_dtype, w_shape, w_dtype, bias_dtype, padding_mode, data_format,
                w_layout):
    """The checks ``conv`` and ``conv_transpose`` share; returns ``(rank,
    batched, channels_last, batch, in_channels, in_spatial)``."""
    check_numeric("x", x_dtype)
    check_numeric("weight", w_dtype)
    if bias_dtype is not None:
        check_numeric("bias", bias_dtype)
    if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format={data_format!r} is not a data format; use "
            f"'channels_first' (N, C, *spatial) or 'channels_last' (N, *spatial, C)")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode={padding_mode!r} is not a padding mode; use one of "
            f"{', '.join(repr(m) for m in PADDING_MODES)}")
    if len(w_shape) < 3:
        raise ValueError(
            f"weight has shape {tuple(w_shape)}; expected at least 3 dims {w_layout}")
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
    return rank, batched, channels_last, x_shape[0] if batched else 1, in_channels, in_spatial


def _finish(geometry, out_channels, out_spatial, bias_shape, dtypes, batched, channels_last,
            batch, padding_mode) -> CallPlan:
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ValueError(
            f"bias has shape {tuple(bias_shape)}; expected ({out_channels},), "
            f"one value per output channel")
    # The array a mode pads: conv's input, conv_transpose's output (whose
    # adjoint conv pads it); torch.nn.functional.pad has the same limits.
    if padding_mode in ("reflect", "circular", "replicate"):
        for dim, (size, before, after) in enumerate(zip(
                geometry.out_spatial, geometry.pad_before, geometry.pad_after)):
            limit = {"reflect": size - 1, "circular": size}.get(
                padding_mode, max(before, after) if size else 0)  # replicate: any, if size
            if max(before, after) > limit:
                bound = {"reflect": "less than", "circular": "at most"}.get(
                    padding_mode, "0 for an empty array, and at most")
                raise ValueError(
                    f"padding_mode={padding_mode!r} pads spatial dim {dim} by "
                    f"{(before, after)}; in that mode each side must be {bound} the "
                    f"size {size} of the array it pads, so at most {limit}")
    sample_out = ((out_spatial + (out_channels,)) if channels_last
                  else ((out_channels,) + out_spatial))
    out_shape = ((batch,) + sample_out) if batched else sample_out
    return CallPlan(geometry, working_dtype(*dtypes), batched, channels_last, batch,
                    out_shape, padding_mode)


def plan_call(x_shape, x_dtype, w_shape, w_dtype, bias_shape, bias_dtype, *,
              stride, padding, output_padding, dilation, groups, output_size,
              padding_mode, data_format) -> CallPlan:
    """Check one ``conv_transpose`` call from shapes and dtypes alone and
    plan its result."""
    rank, batched, channels_last, batch, in_channels, in_spatial = _check_call(
        x_shape, x_dtype, w_shape, w_dtype, bias_dtype, padding_mode, data_format,
        "(C_in, C_out/groups, *kernel)")
    geometry = resolve_geometry(
        in_spatial, in_channels, tuple(w_shape), stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=_spatial_output_size(output_size, rank, batched, channels_last,
                                         batch, int(w_shape[1]) * groups
                                         if isinstance(groups, int) else None))
    dtypes = [x_dtype, w_dtype] + ([] if bias_dtype is None else [bias_dtype])
    return _finish(geometry, geometry.out_channels, geometry.out_spatial, bias_shape, dtypes,
                   batched, channels_last, batch, padding_mode)


def plan_conv(x_shape, x_dtype, w_shape, w_dtype, bias_shape, bias_dtype, *,
              stride, padding, dilation, groups, padding_mode, data_format) -> CallPlan:
    """Check one ``conv`` call from shapes and dtypes alone and plan its
    result (see :class:`CallPlan` for its geometry)."""
    rank, batched, channels_last, batch, in_channels, in_spatial = _check_call(
        x_shape, x_dtype, w_shape, w_dtype, bias_dtype, padding_mode, data_format,
        "(C_out, C_in/groups, *kernel)")
    geometry = resolve_conv_geometry(in_spatial, in_channels, tuple(w_shape), stride=stride,
                                     padding=padding, dilation=dilation, groups=groups)
    dtypes = [x_dtype, w_dtype] + ([] if bias_dtype is None else [bias_dtype])
    return _finish(geometry, geometry.in_channels, geometry.in_spatial, bias_shape, dtypes,
                   batched, channels_last, batch, padding_mode)


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


def as_array(name: str, value) -> np.ndarray:
    """``value`` as a NumPy array (no copy of an ndarray or of a CPU torch
    tensor), or a ``TypeError`` naming the argument."""
    if isinstance(value, np.ma.MaskedArray):  # converting would drop the mask
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray; its mask has no meaning here: pass "
            f"{name}.filled(fill_value) or np.asarray({name})")
    if isinstance(value, np.ndarray):
        return value
    if is_torch_tensor(value):
        return _torch_as_array(name, value)
    if is_device_array(value):
        raise TypeError(
            f"{name} is a GPU array but device='cpu' was asked for (or the function "
            f"runs on the CPU only); use device='auto' or 'cuda', or copy it to the "
            f"host first")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} cannot be read as a numeric array: {err}") from None
    return array


def check_out(out, plan: CallPlan) -> None:
    """Validate a NumPy ``out=`` array against the planned result."""
    if not isinstance(out, np.ndarray):
        raise TypeError(
            f"out must be a numpy.ndarray of shape {plan.out_shape} and dtype "
            f"{plan.dtype} (conv and conv_transpose also take a writable torch CPU "
            f"tensor or buffer that NumPy views in place); got {type(out).__name__}")
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
    Numba device array, including the CUDA simulator's, which has none.
    A torch tensor is asked for its device instead: the interface of one
    that requires grad raises rather than answer."""
    if value is None or type(value) is np.ndarray:
        return False
    if is_torch_tensor(value):
        return value.device.type == "cuda"
    return (getattr(value, "__cuda_ndarray__", False) is True
            or hasattr(value, "__cuda_array_interface__"))


# --- foreign arrays: torch tensors, out= buffers, xarray -------------------

def _loaded(module: str, name: str):
    """``module.name`` when ``module`` is already imported, else ``None``:
    an object can only be of a type whose module is loaded, so this finds
    foreign types without ever importing their library."""
    mod = sys.modules.get(module)
    return None if mod is None else getattr(mod, name, None)


def is_torch_tensor(value) -> bool:
    """A ``torch.Tensor`` (or subclass, such as ``nn.Parameter``)."""
    tensor = _loaded("torch", "Tensor")
    return tensor is not None and isinstance(value, tensor)


def _is_data_array(value) -> bool:
    data_array = _loaded("xarray", "DataArray")
    return data_array is not None and isinstance(value, data_array)


def _resolved(tensor):
    """``tensor`` detached from autograd's graph (no copy), its lazy
    conjugate or negative bit applied (a copy, only where one is set)."""
    tensor = tensor.detach()
    if getattr(tensor, "is_conj", bool)():
        tensor = tensor.resolve_conj()
    if getattr(tensor, "is_neg", bool)():
        tensor = tensor.resolve_neg()
    return tensor


def _torch_as_array(name: str, tensor) -> np.ndarray:
    """A CPU tensor's NumPy view, with or without ``requires_grad``: the
    result of a call is a NumPy array outside torch's graph."""
    if tensor.device.type == "cuda":
        raise TypeError(
            f"{name} is a GPU array (a torch tensor on {tensor.device}) but "
            f"device='cpu' was asked for (or the function runs on the CPU only); use "
            f"device='auto' or 'cuda', or pass {name}.cpu()")
    tensor = _resolved(tensor)
    try:
        return tensor.numpy()
    except (RuntimeError, TypeError) as err:
        raise TypeError(
            f"{name} is a torch tensor of dtype {tensor.dtype} on {tensor.device}, which "
            f"NumPy cannot read ({err}); convert it first, e.g. {name}.cpu() or "
            f"{name}.float()") from None


def _input(name: str, value):
    """An input as the functions take it: a CPU tensor as its NumPy view, a
    CUDA tensor detached (the GPU path reads its
    ``__cuda_array_interface__``, which a tensor requiring grad refuses);
    anything else as it is."""
    if not is_torch_tensor(value):
        return value
    return _resolved(value) if value.device.type == "cuda" else _torch_as_array(name, value)


def writable_out(out):
    """``out=`` as an array the call can write in place: a NumPy view of a
    CPU torch tensor, of an xarray DataArray's NumPy data, of a buffer
    (``memoryview``, ``bytearray``) or of an object with
    ``__array_interface__``; ndarrays and device arrays (a CUDA tensor
    included) as they are. Anything else is returned unchanged, for
    :func:`check_out` to reject by name once the result's shape is known.

    Raises ``ValueError`` for a tensor that requires grad or carries a lazy
    conjugate or negative bit: writing its memory behind autograd's back
    (or through a lazy view) would give a wrong tensor.
    """
    if out is None or isinstance(out, np.ndarray):
        return out
    if is_torch_tensor(out):
        if out.requires_grad:
            raise ValueError(
                "out is a torch tensor that requires grad; numba_deconv writes out= "
                "behind autograd's back, so its graph would be wrong. Pass a tensor with "
                "requires_grad=False (e.g. made under torch.no_grad()), or no out=")
        for bit, fix in (("is_conj", "resolve_conj"), ("is_neg", "resolve_neg")):
            if getattr(out, bit, bool)():
                raise ValueError(
                    f"out is a torch tensor with its lazy {bit[3:]} bit set; writing its "
                    f"memory would not give the result. Pass out.{fix}() or a new tensor")
        if out.device.type == "cuda":
            return out  # the GPU path writes it through __cuda_array_interface__
        try:
            return out.numpy()
        except (RuntimeError, TypeError) as err:
            raise TypeError(
                f"out is a torch tensor of dtype {out.dtype} on {out.device}, which NumPy "
                f"cannot view in place ({err})") from None
    if is_device_array(out):
        return out
    if _is_data_array(out):
        return writable_out(out.data)
    if hasattr(out, "__array_interface__") or hasattr(out, "__array_struct__"):
        return np.asarray(out)
    try:
        memoryview(out)
    except TypeError:
        return out
    return np.asarray(out)  # a view; a read-only buffer gives a read-only one


def _labelled(x, result, weight):
    """``result`` as a DataArray labelled from ``x``'s: the same dims,
    name and attrs; of the coordinates only those along the batch dim (and
    scalar ones), the channel and spatial coordinates being no longer
    those of the result's positions."""
    import xarray  # loaded: x is one of its DataArrays

    w_ndim = getattr(weight, "ndim", None)
    batched = len(x.dims) == (np.ndim(weight) if w_ndim is None else w_ndim)
    keep = {x.dims[0]} if batched else set()
    dropped = [name for name, coord in x.coords.items() if not set(coord.dims) <= keep]
    return xarray.DataArray(result, coords=x.drop_vars(dropped).coords, dims=x.dims,
                            name=x.name, attrs=dict(x.attrs))


Function = TypeVar("Function", bound=Callable[..., Any])


def foreign_arrays(function: Function) -> Function:
    """Let ``conv`` or ``conv_transpose`` take foreign arrays.

    - torch tensors as ``x``, ``weight``, ``bias``, with or without
      ``requires_grad``: read through ``detach()`` (no copy on the CPU);
      the result is a NumPy array (a device array for CUDA tensors), not
      part of torch's graph;
    - ``out=`` anything :func:`writable_out` views in place: written, and
      that same object returned (a torch tensor stays a torch tensor);
    - an xarray DataArray ``x``: computed on its data, returned as a
      DataArray (see :func:`_labelled`).

    Plain NumPy calls go straight through.
    """
    @functools.wraps(function)
    def call(x, weight, bias=None, *, out=None, **kwargs):
        if (type(x) is np.ndarray and type(weight) is np.ndarray
                and (bias is None or type(bias) is np.ndarray)
                and (out is None or type(out) is np.ndarray)):
            return function(x, weight, bias, out=out, **kwargs)
        data_array = x if _is_data_array(x) else None
        if data_array is not None:
            x = data_array.data
        x, weight = _input("x", x), _input("weight", weight)
        bias = None if bias is None else _input("bias", bias)
        result = function(x, weight, bias, out=writable_out(out), **kwargs)
        if out is not None:
            return out
        return result if data_array is None else _labelled(data_array, result, weight)

    return call  # type: ignore[return-value]
