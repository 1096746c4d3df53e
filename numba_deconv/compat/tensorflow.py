"""TensorFlow's transposed convolutions, with TensorFlow's arguments and results.

``conv1d_transpose``, ``conv2d_transpose``, ``conv3d_transpose`` (``tf.nn``)
and ``conv2d_backprop_input`` (``tf.compat.v1.nn``) take the same arguments
as TensorFlow and return the same numbers as NumPy arrays:

- ``filters`` is ``[*k, out_channels, in_channels]``; it is the PyTorch/ONNX
  weight ``[in, out, *k]`` transposed, and it is used without a flip.
- ``strides`` and ``dilations``: an int, a list of 1, of n, or of n + 2
  entries (the batch and channel entries must be 1).
- ``padding``: ``"SAME"``, ``"VALID"`` or explicit pairs, n + 2 of them in
  the order of ``data_format`` (``[[0, 0], [t, b], [l, r], [0, 0]]`` for
  NHWC, ``[[0, 0], [0, 0], [t, b], [l, r]]`` for NCHW), batch and channel
  pairs zero. TensorFlow accepts explicit padding for 2-D only; here every
  rank accepts it.
- ``output_shape`` (``input_sizes``) is the full shape of the result. A
  transposed convolution is the gradient of a forward convolution, so
  TensorFlow takes the padding from the *forward* convolution of a tensor of
  that shape, and requires that forward convolution to give back the size of
  ``input``. Per spatial dim, with ``k_eff = d*(k - 1) + 1``:

  - SAME: forward size ``ceil(O / s)``; total padding
    ``max((ceil(O / s) - 1)*s + k_eff - O, 0)``, half (rounded down)
    before, the rest after.
  - VALID: forward size ``ceil((O - k_eff + 1) / s)``; no padding.
  - explicit ``(p0, p1)``: forward size ``(O + p0 + p1 - k_eff) // s + 1``.

  So several ``O`` fit one input size (up to ``s`` of them). Where none fits,
  TensorFlow's CPU kernel fails with "could not create a primitive
  descriptor"; here a ``ValueError`` names the dimension, the size given and
  the sizes that would be valid.
- ``data_format``: NWC/NCW, NHWC/NCHW, NDHWC/NCDHW; channels-last inputs are
  computed in place without a transpose.
- An input without positions (a 0-wide ``out_backprop``) or without
  channels gives zeros of ``output_shape``, as TensorFlow does; sizes are
  checked with TensorFlow's arithmetic (integer division toward zero).
- ``dilations > 1`` work for every rank and stride.
- Grouped convolution follows TensorFlow: ``groups = out_channels //
  filters.shape[-2]``.

``name`` (and ``use_cudnn_on_gpu``) are accepted and ignored so that calls
copied from TensorFlow run unchanged.
"""

from __future__ import annotations

import typing

import numpy as np

from .._params import MAX_STEP, is_int
from .._plan import working_dtype
from ._memo import CallMemo, call_key

__all__ = ["conv1d_transpose", "conv2d_transpose", "conv3d_transpose",
           "conv2d_backprop_input"]

_FORMATS = {
    1: {"NWC": True, "NCW": False},
    2: {"NHWC": True, "NCHW": False},
    3: {"NDHWC": True, "NCDHW": False},
}
_SPATIAL_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _channels_last(data_format, rank: int, func: str) -> bool:
    formats = _FORMATS[rank]
    if not isinstance(data_format, str) or data_format.upper() not in formats:
        raise ValueError(
            f"{func}: data_format={data_format!r} is not supported; use one of "
            f"{', '.join(repr(f) for f in formats)}")
    return formats[data_format.upper()]


def _dim_names(rank: int, channels_last: bool) -> tuple:
    spatial = _SPATIAL_NAMES[rank]
    if channels_last:
        return ("batch", *spatial, "channels")
    return ("batch", "channels", *spatial)


def _as_int_list(name: str, value, func: str) -> list:
    """A TensorFlow-style shape/sequence argument (list, tuple, array) as ints."""
    if is_int(value):
        return [int(value)]
    try:
        values = np.asarray(value).tolist()
    except Exception as err:  # pragma: no cover - exotic objects
        raise TypeError(f"{func}: {name}={value!r} must be a list of ints") from err
    if not isinstance(values, list) or any(
            isinstance(v, list) or not is_int(v) for v in values):
        raise TypeError(f"{func}: {name}={value!r} must be an int or a flat list of ints")
    return [int(v) for v in values]


def _spatial_sequence(name: str, value, rank: int, channels_last: bool,
                      func: str) -> tuple:
    """strides/dilations: None, an int, or a list of 1, n or n + 2 ints (>= 1)."""
    if value is None:
        return (1,) * rank
    values = _as_int_list(name, value, func)
    if len(values) == 1:
        values = values * rank
    elif len(values) == rank + 2:
        outer = (values[0], values[-1]) if channels_last else (values[0], values[1])
        if outer != (1, 1):
            raise ValueError(
                f"{func}: {name}={value!r} sets the batch or channel entry to "
                f"{outer}; like TensorFlow, only 1 is supported there")
        values = values[1:-1] if channels_last else values[2:]
    elif len(values) != rank:
        raise ValueError(
            f"{func}: {name}={value!r} should be an int or a list of 1, {rank} or "
            f"{rank + 2} ints; got {len(values)}")
    bad = [v for v in values if v < 1]
    if bad:
        raise ValueError(f"{func}: {name}={value!r} must be >= 1 in every dim; got {bad[0]}")
    bad = [v for v in values if v > MAX_STEP]
    if bad:
        raise ValueError(
            f"{func}: {name}={value!r} must be <= {MAX_STEP} in every dim; got {bad[0]}")
    return tuple(values)


def _padding(padding, rank: int, channels_last: bool, func: str):
    """``("SAME" | "VALID", None)`` or ``("EXPLICIT", ((before, after), ...))``."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode in ("SAME", "VALID"):
            return mode, None
        raise ValueError(
            f"{func}: padding={padding!r} is not a padding; use 'SAME', 'VALID' or "
            f"{rank + 2} explicit (before, after) pairs in data_format order")
    try:
        pairs = np.asarray(padding).tolist()
    except Exception as err:  # pragma: no cover
        raise TypeError(f"{func}: padding={padding!r} is not a padding") from err
    if (not isinstance(pairs, list) or len(pairs) != rank + 2
            or any(not isinstance(p, list) or len(p) != 2
                   or not all(is_int(v) for v in p) for p in pairs)):
        raise ValueError(
            f"{func}: explicit padding={padding!r} must be {rank + 2} (before, after) "
            f"pairs of ints, one per dim of the {'channels-last' if channels_last else 'channels-first'} "
            f"input, e.g. {_example_padding(rank, channels_last)}")
    outer = (pairs[0], pairs[-1]) if channels_last else (pairs[0], pairs[1])
    if any(v != 0 for p in outer for v in p):
        raise ValueError(
            f"{func}: padding={padding!r} pads the batch or channel dim; like "
            f"TensorFlow, only [0, 0] is supported there, e.g. "
            f"{_example_padding(rank, channels_last)}")
    spatial = pairs[1:-1] if channels_last else pairs[2:]
    if any(v < 0 for p in spatial for v in p):
        raise ValueError(f"{func}: padding={padding!r} must be >= 0 everywhere")
    return "EXPLICIT", tuple((int(a), int(b)) for a, b in spatial)


def _example_padding(rank: int, channels_last: bool) -> list:
    spatial = [[1, 1]] * rank
    return [[0, 0], *spatial, [0, 0]] if channels_last else [[0, 0], [0, 0], *spatial]


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division (toward zero), as TensorFlow computes sizes."""
    return a // b if a >= 0 else -(-a // b)


def _forward_size(out: int, k_eff: int, s: int, mode: str, pair):
    """TensorFlow's forward-convolution size of an ``out``-long input, and its pads.

    Returns ``(size, pad_before, pad_after)``, with TensorFlow's arithmetic
    (``GetWindowedOutputSize``: integer division toward zero); size < 0
    where TensorFlow reports "Computed output size would be negative".
    """
    if mode == "SAME":
        size = -(-out // s)
        total = max((size - 1) * s + k_eff - out, 0)
        return size, total // 2, total - total // 2
    before, after = (0, 0) if mode == "VALID" else pair
    return _trunc_div(out + before + after - k_eff + s, s), before, after


def _reachable(size: int, k_eff: int, s: int, mode: str, pair):
    """Inclusive range of ``out`` whose forward size is ``size`` (may be empty);
    ``out = 0`` (an empty result) only for ``size = 0`` (an empty input)."""
    if mode == "SAME":
        lo, hi = ((size - 1) * s + 1, size * s) if size else (0, 0)
    else:
        total = 0 if mode == "VALID" else pair[0] + pair[1]
        # trunc((out + total - k_eff + s) / s) == size
        q_lo, q_hi = (size * s, size * s + s - 1) if size else (1 - s, s - 1)
        lo, hi = q_lo - total + k_eff - s, q_hi - total + k_eff - s
    return max(lo, 0 if size == 0 else 1), hi


def _as_numeric(func: str, name: str, value) -> np.ndarray:
    """An argument as a NumPy array of numbers, or an error naming it."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{func}: {name} cannot be read as a numeric array: {err}") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"{func}: {name} has dtype {array.dtype}, which is not numeric; pass a float "
            f"or complex array (e.g. {name}.astype(np.float32))")
    return array


class _Checked(typing.NamedTuple):
    """What :func:`_check` works out for a call shape."""

    empty_shape: tuple | None  # the zeros' shape, where nothing is summed
    dtype: np.dtype
    kwargs: dict  # numba_deconv.conv_transpose's, all but the arrays


#: :func:`_check`'s results per call shape (:mod:`._memo`).
_CHECKED = CallMemo()


def _transpose(func: str, rank: int, x, filters, output_shape, strides, padding,
               data_format, dilations, *, x_name: str, filters_name: str,
               shape_name: str, allow_spatial_shape: bool = False):
    from ..api import conv_transpose

    # (func names the rank, the argument names and allow_spatial_shape.)
    key = call_key(func, x, filters, output_shape, strides, padding, data_format, dilations)
    checked = _CHECKED.get(key)
    if checked is None:
        x = _as_numeric(func, x_name, x)
        filters = _as_numeric(func, filters_name, filters)
        checked = _check(func, rank, x, filters, output_shape, strides, padding, data_format,
                         dilations, x_name, filters_name, shape_name, allow_spatial_shape)
        _CHECKED.keep(key, checked)
    if checked.empty_shape is not None:
        return np.zeros(checked.empty_shape, checked.dtype)
    # [*k, out/groups, in] -> (in, out/groups, *k), no flip, laid out here:
    # the core would copy a transposed view all the same, and a tiny call
    # takes its direct way to the kernel only with a C-contiguous weight.
    weight = np.ascontiguousarray(np.transpose(filters, (rank + 1, rank, *range(rank))))
    return conv_transpose(x, weight, **checked.kwargs)


def _check(func, rank, x, filters, output_shape, strides, padding, data_format, dilations,
           x_name, filters_name, shape_name, allow_spatial_shape) -> _Checked:
    """:func:`_transpose`'s checks of a call (``x`` and ``filters`` numeric
    arrays), and its arguments to :func:`numba_deconv.conv_transpose`."""
    channels_last = _channels_last(data_format, rank, func)
    try:
        dtype = working_dtype(x.dtype, filters.dtype)
    except TypeError as err:
        raise TypeError(f"{func}: {x_name} and {filters_name}: {err}") from None
    if x.ndim != rank + 2:
        raise ValueError(
            f"{func}: {x_name} must be {rank + 2}-D ({data_format}); got shape "
            f"{x.shape}")
    if filters.ndim != rank + 2:
        raise ValueError(
            f"{func}: {filters_name} must be {rank + 2}-D [*kernel, out_channels, "
            f"in_channels]; got shape {filters.shape}")
    c_axis = -1 if channels_last else 1
    in_channels = x.shape[c_axis]
    in_spatial = x.shape[1:-1] if channels_last else x.shape[2:]
    kernel = filters.shape[:rank]
    if min(kernel) < 1:
        raise ValueError(
            f"{func}: {filters_name} has shape {filters.shape}, an empty kernel; its "
            f"first {rank} dims (the kernel sizes) must be >= 1")
    if filters.shape[-1] != in_channels:
        raise ValueError(
            f"{func}: {x_name} has {in_channels} channels but {filters_name} "
            f"{filters.shape} expects {filters.shape[-1]} (its last dim); "
            f"{filters_name} is [*kernel, out_channels, in_channels]")

    names = _dim_names(rank, channels_last)
    shape = _as_int_list(shape_name, output_shape, func)
    if allow_spatial_shape and len(shape) == rank:
        out_spatial = tuple(shape)
        out_channels = filters.shape[-2]
        shape = ([x.shape[0], *shape, out_channels] if channels_last
                 else [x.shape[0], out_channels, *shape])
    elif len(shape) != rank + 2:
        allowed = f"{rank} or {rank + 2}" if allow_spatial_shape else f"{rank + 2}"
        raise ValueError(
            f"{func}: {shape_name}={list(shape)} must have {allowed} entries "
            f"({data_format}); got {len(shape)}")
    negative = [i for i, v in enumerate(shape) if v < 0]
    if negative:
        raise ValueError(
            f"{func}: {shape_name}={list(shape)} has {shape_name}[{negative[0]}] = "
            f"{shape[negative[0]]}; every size must be >= 0")
    out_spatial = tuple(shape[1:-1] if channels_last else shape[2:])
    out_channels = shape[c_axis]
    if shape[0] != x.shape[0]:
        raise ValueError(
            f"{func}: {shape_name}[0] (batch) = {shape[0]} but {x_name} has batch "
            f"{x.shape[0]}; they must be equal")
    per_group = filters.shape[-2]
    if per_group < 1:
        raise ValueError(
            f"{func}: {filters_name} has shape {filters.shape}: "
            f"{filters_name}.shape[-2] (the output channels per group) = 0 must be >= 1")
    if out_channels < 1 or out_channels % per_group:
        raise ValueError(
            f"{func}: {shape_name}[{c_axis % (rank + 2)}] (channels) = {out_channels} "
            f"must be a multiple of {filters_name}.shape[-2] = {per_group} (the "
            f"output channels per group); for an ungrouped convolution use "
            f"{per_group}")
    groups = out_channels // per_group
    if in_channels % groups:
        raise ValueError(
            f"{func}: {shape_name} asks for {out_channels} channels = {groups} groups "
            f"of {per_group}, but the {in_channels} channels of {x_name} do not split "
            f"into {groups} groups")

    s = _spatial_sequence("strides", strides, rank, channels_last, func)
    d = _spatial_sequence("dilations", dilations, rank, channels_last, func)
    mode, explicit = _padding(padding, rank, channels_last, func)

    pairs = []
    for dim in range(rank):
        k_eff = d[dim] * (kernel[dim] - 1) + 1
        pair = explicit[dim] if explicit else None
        o = out_spatial[dim]
        size, before, after = _forward_size(o, k_eff, s[dim], mode, pair)
        if size != in_spatial[dim] or (o == 0 and size != 0):
            axis = dim + 1 if channels_last else dim + 2
            lo, hi = _reachable(in_spatial[dim], k_eff, s[dim], mode, pair)
            how = (f"with {mode} padding" if mode != "EXPLICIT"
                   else f"with explicit padding {list(pair)}")
            valid = (f"{shape_name}[{axis}] must be in {lo}..{hi}" if lo <= hi else
                     f"no {shape_name}[{axis}] reaches it; reduce the padding")
            maps = (f"to {size}" if size >= 0 else
                    f"to a negative size ({size}, which TensorFlow refuses)")
            raise ValueError(
                f"{func}: {shape_name}[{axis}] ({names[axis]}) = {o} does not fit "
                f"{x_name} size {in_spatial[dim]}: a forward convolution {how}, "
                f"stride {s[dim]} and kernel {kernel[dim]}"
                f"{f' (dilation {d[dim]}, span {k_eff})' if d[dim] > 1 else ''} maps "
                f"{o} {maps}, not {in_spatial[dim]}; for {x_name} size "
                f"{in_spatial[dim]}, {valid}")
        pairs.append((before, after))

    # Nothing to sum (TensorFlow returns zeros, or an empty result): the
    # core refuses inputs without positions or channels.
    empty = min(in_spatial) == 0 or in_channels == 0 or min(out_spatial) == 0
    return _Checked(tuple(shape) if empty else None, dtype, dict(
        stride=s, padding=tuple(pairs), dilation=d, groups=groups, output_size=out_spatial,
        data_format="channels_last" if channels_last else "channels_first"))


def conv1d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NWC", dilations=None, name=None):
    """``tf.nn.conv1d_transpose``: the 1-D transposed convolution.

    Parameters
    ----------
    input : array_like
        ``[batch, width, in_channels]`` (NWC) or ``[batch, in_channels,
        width]`` (NCW).
    filters : array_like
        ``[k, out_channels / groups, in_channels]``, used without a flip.
    output_shape : sequence of int
        Full result shape, e.g. ``[batch, width, out_channels]`` for NWC.
    strides : int or sequence of int
        An int or a list of 1 or 3 ints.
    padding : {"SAME", "VALID"} or sequence of pairs
        See :mod:`numba_deconv.compat.tensorflow`.
    data_format : {"NWC", "NCW"}
    dilations : int or sequence of int, optional
        Like ``strides``; default 1. Dilation > 1 works on every stride.
    name : str, optional
        Ignored (TensorFlow's op name).

    Returns
    -------
    numpy.ndarray
        The result, of shape ``output_shape``.

    Raises
    ------
    ValueError
        A bad argument, or an ``output_shape`` whose forward convolution
        does not give back ``input``'s size: the message names the dimension,
        the size given and the valid range.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_deconv.compat.tensorflow import conv1d_transpose
    >>> x = np.array([[[1.0], [2.0]]])             # [1, 2, 1] NWC
    >>> f = np.array([[[1.0]], [[10.0]], [[100.0]]])  # [3, 1, 1]
    >>> conv1d_transpose(x, f, [1, 5, 1], 2, "VALID")[0, :, 0]
    array([  1.,  10., 102.,  20., 200.])
    """
    return _transpose("conv1d_transpose", 1, input, filters, output_shape, strides,
                      padding, data_format, dilations, x_name="input",
                      filters_name="filters", shape_name="output_shape")


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NHWC", dilations=None, name=None):
    """``tf.nn.conv2d_transpose``: the 2-D transposed convolution.

    Parameters
    ----------
    input : array_like
        ``[batch, height, width, in_channels]`` (NHWC) or ``[batch,
        in_channels, height, width]`` (NCHW).
    filters : array_like
        ``[kh, kw, out_channels / groups, in_channels]``, used without a flip.
    output_shape : sequence of int
        Full result shape in ``data_format`` order, checked like TensorFlow.
    strides : int or sequence of int
        An int or a list of 1, 2 or 4 ints.
    padding : {"SAME", "VALID"} or sequence of pairs
        Or ``[[0, 0], [top, bottom], [left, right], [0, 0]]`` (NHWC),
        ``[[0, 0], [0, 0], [top, bottom], [left, right]]`` (NCHW).
    data_format : {"NHWC", "NCHW"}
    dilations : int or sequence of int, optional
        Like ``strides``; default 1.
    name : str, optional
        Ignored.

    Returns
    -------
    numpy.ndarray
        The result, of shape ``output_shape``.

    Raises
    ------
    ValueError
        A bad argument, or an ``output_shape`` not reachable from ``input``
        (the message names the dimension, the size and the valid range).

    Examples
    --------
    TensorFlow's worked example: the first element is -67 x -1 = 67, the
    kernel is not flipped.

    >>> import numpy as np
    >>> from numba_deconv.compat.tensorflow import conv2d_transpose
    >>> x = np.array([[-67.0, -77.0], [-117.0, -127.0]]).reshape(1, 2, 2, 1)
    >>> f = np.array([[-1.0, 2, -3], [4, -5, 6], [-7, 8, -9]]).reshape(3, 3, 1, 1)
    >>> conv2d_transpose(x, f, [1, 5, 5, 1], 2, "VALID")[0, 0, :, 0]
    array([  67., -134.,  278., -154.,  231.])
    """
    return _transpose("conv2d_transpose", 2, input, filters, output_shape, strides,
                      padding, data_format, dilations, x_name="input",
                      filters_name="filters", shape_name="output_shape")


def conv3d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NDHWC", dilations=None, name=None):
    """``tf.nn.conv3d_transpose``: the 3-D transposed convolution.

    Parameters
    ----------
    input : array_like
        ``[batch, depth, height, width, in_channels]`` (NDHWC) or
        ``[batch, in_channels, depth, height, width]`` (NCDHW).
    filters : array_like
        ``[kd, kh, kw, out_channels / groups, in_channels]``.
    output_shape : sequence of int
        Full result shape in ``data_format`` order, checked like TensorFlow.
    strides : int or sequence of int
        An int or a list of 1, 3 or 5 ints.
    padding : {"SAME", "VALID"} or sequence of pairs
        See :mod:`numba_deconv.compat.tensorflow`.
    data_format : {"NDHWC", "NCDHW"}
    dilations : int or sequence of int, optional
        Like ``strides``; default 1.
    name : str, optional
        Ignored.

    Returns
    -------
    numpy.ndarray
        The result, of shape ``output_shape``.

    Raises
    ------
    ValueError
        A bad argument or an unreachable ``output_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_deconv.compat.tensorflow import conv3d_transpose
    >>> x = np.ones((1, 2, 2, 2, 1))
    >>> f = np.ones((2, 2, 2, 1, 1))
    >>> conv3d_transpose(x, f, [1, 4, 4, 4, 1], 2, "SAME").sum()
    np.float64(64.0)
    """
    return _transpose("conv3d_transpose", 3, input, filters, output_shape, strides,
                      padding, data_format, dilations, x_name="input",
                      filters_name="filters", shape_name="output_shape")


def conv2d_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                          data_format="NHWC", dilations=None, *,
                          use_cudnn_on_gpu=True, name=None):
    """``tf.compat.v1.nn.conv2d_backprop_input``: the gradient of ``conv2d``.

    The gradient of ``tf.nn.conv2d(input, filter, strides, padding)`` with
    respect to ``input``, given the gradient ``out_backprop`` of its output;
    the same computation as :func:`conv2d_transpose` with ``input`` =
    ``out_backprop`` and ``output_shape`` = ``input_sizes``.

    Parameters
    ----------
    input_sizes : sequence of int
        Shape of the forward ``input``: 4 ints in ``data_format`` order, or
        the 2 spatial sizes (batch and channels then come from
        ``out_backprop`` and ``filter``).
    filter : array_like
        The forward filter ``[kh, kw, in_channels / groups, out_channels]``.
    out_backprop : array_like
        Gradient of the forward output, 4-D in ``data_format``.
    strides : int or sequence of int
        An int or a list of 1, 2 or 4 ints.
    padding : {"SAME", "VALID"} or sequence of pairs
        As in :func:`conv2d_transpose`.
    data_format : {"NHWC", "NCHW"}
    dilations : int or sequence of int, optional
        Like ``strides``; default 1.
    use_cudnn_on_gpu, name
        Ignored.

    Returns
    -------
    numpy.ndarray
        The gradient with respect to the forward input, of shape
        ``input_sizes``.

    Raises
    ------
    ValueError
        Inconsistent sizes: where the forward convolution of ``input_sizes``
        does not have the size of ``out_backprop``, the message names the
        dimension, both sizes and the valid ``input_sizes`` (TensorFlow's
        oneDNN kernel says "could not create a primitive descriptor").

    Examples
    --------
    >>> import numpy as np
    >>> from numba_deconv.compat.tensorflow import conv2d_backprop_input
    >>> dy = np.ones((1, 3, 3, 1))
    >>> conv2d_backprop_input([1, 4, 4, 1], np.ones((2, 2, 1, 1)), dy, 2, "SAME")
    Traceback (most recent call last):
    ...
    ValueError: conv2d_backprop_input: input_sizes[1] (height) = 4 does not fit out_backprop size 3: a forward convolution with SAME padding, stride 2 and kernel 2 maps 4 to 2, not 3; for out_backprop size 3, input_sizes[1] must be in 5..6
    """
    return _transpose("conv2d_backprop_input", 2, out_backprop, filter, input_sizes,
                      strides, padding, data_format, dilations, x_name="out_backprop",
                      filters_name="filter", shape_name="input_sizes",
                      allow_spatial_shape=True)

