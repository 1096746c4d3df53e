"""The ONNX ``ConvTranspose`` operator (opset 22), attribute for attribute.

:func:`conv_transpose` takes the operator's inputs ``X``, ``W``, ``B`` and
its attributes as keyword arguments and returns ``Y`` as a NumPy array.
``X`` is ``(N, C, D1, ..., Dn)`` for any n >= 1, ``W`` is
``(C, M / group, k1, ..., kn)`` (no flip).

Padding follows the operator specification:

- ``pads = [x1_begin, ..., xn_begin, x1_end, ..., xn_end]`` (default 0) and
  ``output_shape[i] = stride[i]*(input_size[i] - 1) + output_padding[i]
  + ((kernel_shape[i] - 1)*dilations[i] + 1) - pads[start_i] - pads[end_i]``.
- ``output_shape`` given (spatial sizes only): ``pads`` is ignored and
  ``total_padding[i] = stride[i]*(input_size[i] - 1) + output_padding[i]
  + ((kernel_shape[i] - 1)*dilations[i] + 1) - output_shape[i]``; with
  ``auto_pad="SAME_UPPER"`` ``pads[start_i] = total_padding[i] // 2``, the
  rest at the end; otherwise (``NOTSET``, ``SAME_LOWER``, ``VALID``)
  ``pads[end_i] = total_padding[i] // 2``, the rest at the start.
- ``auto_pad="SAME_UPPER"``/``"SAME_LOWER"`` without ``output_shape``: the
  same with ``output_shape[i] = input_size[i] * strides[i]``; odd totals put
  the extra pad at the end (UPPER) or the start (LOWER).
- ``auto_pad="VALID"``: no padding.
- An ``X`` without positions (a zero spatial size) or channels sums
  nothing: ``Y`` of the size above is the bias (zeros without ``B``).

The halves are taken with floor division, as in ``onnx.reference``; that is
the only reading consistent with the specification's example
``test_convtranspose_output_shape``. A negative pad (``output_shape`` above
the size without padding, or ``SAME`` with ``kernel + output_padding <
stride``) adds that many zeros (plus bias) at that end.

Known differences between the specification and its implementations (onnx
1.23, onnxruntime 1.31), where this module follows the specification:

- ``SAME_*`` with ``(k - 1)*d + 1 + output_padding < stride``: the
  specification's output is ``input * stride`` long; onnxruntime returns
  ``(input - 1)*stride + (k - 1)*d + 1 + output_padding`` (shorter).
- ``output_shape`` more than ``stride - 1`` above the unpadded size:
  onnxruntime raises; the specification's formula pads with zeros.
- ``stride <= output_padding < dilation``: the specification allows it
  ("less than the corresponding stride/dilation", as PyTorch's
  ``max(stride, dilation)``); onnxruntime raises ("output_padding may be too
  large for stride").
- ``onnx.reference`` ignores ``output_shape`` unless ``auto_pad`` is SAME_*
  (it then fails with a shape error) and computes ``group > 1`` correctly
  only when every group has one input and one output channel.
"""

from __future__ import annotations

import typing

import numpy as np

from .._params import MAX_STEP, is_int
from .._plan import working_dtype
from ._memo import CallMemo, call_key

__all__ = ["conv_transpose"]

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _as_numeric(name: str, value) -> np.ndarray:
    """An input of the operator as a NumPy array of numbers, or an error naming it."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"ConvTranspose: {name} cannot be read as a numeric array: {err}") \
            from None
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"ConvTranspose: {name} has dtype {array.dtype}, which is not numeric; pass a "
            f"float or complex array (e.g. {name}.astype(np.float32))")
    return array


def _ints(name: str, value, length: int, default: int, minimum: int,
          maximum: int | None = None) -> tuple:
    """An ONNX ints attribute (an int is accepted too) of ``length`` entries."""
    if value is None:
        return (default,) * length
    if is_int(value):
        values = [int(value)] * length
    else:
        try:
            values = np.asarray(value).tolist()
        except Exception as err:  # pragma: no cover
            raise TypeError(f"ConvTranspose: {name}={value!r} must be a list of ints") from err
        if not isinstance(values, list) or not all(is_int(v) for v in values):
            raise TypeError(f"ConvTranspose: {name}={value!r} must be a list of ints")
        if len(values) != length:
            raise ValueError(
                f"ConvTranspose: {name}={list(values)} has {len(values)} entries; "
                f"expected {length}" + (" (begin values, then end values)" if name == "pads"
                                        else " (one per spatial axis)"))
    bad = [v for v in values if v < minimum]
    if bad:
        raise ValueError(
            f"ConvTranspose: {name}={list(values)} must be >= {minimum} everywhere; "
            f"got {bad[0]}")
    bad = [v for v in values if maximum is not None and v > maximum]
    if bad:
        raise ValueError(
            f"ConvTranspose: {name}={list(values)} must be <= {maximum} everywhere; "
            f"got {bad[0]}")
    return tuple(int(v) for v in values)


def _auto_pad(auto_pad) -> str:
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if not isinstance(auto_pad, str) or auto_pad.upper() not in AUTO_PADS:
        raise ValueError(
            f"ConvTranspose: auto_pad={auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    return auto_pad.upper()


def conv_transpose(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1,
                   kernel_shape=None, output_padding=None, output_shape=None,
                   pads=None, strides=None):
    """ONNX ``ConvTranspose``: ``Y = ConvTranspose(X, W, B)`` with its attributes.

    Parameters
    ----------
    X : array_like
        Input ``(N, C, D1, ..., Dn)``, any n >= 1.
    W : array_like
        Weight ``(C, M / group, k1, ..., kn)``, used without a flip.
    B : array_like, optional
        Bias ``(M,)``.
    auto_pad : {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
        ``NOTSET`` uses ``pads``; ``SAME_*`` give ``output = input * strides``,
        an odd total padding putting the extra at the end (UPPER) or start
        (LOWER); ``VALID`` pads nothing.
    dilations : sequence of int, optional
        Per spatial axis, default 1.
    group : int
        Number of groups; ``C`` and ``M`` are split into ``group`` parts.
    kernel_shape : sequence of int, optional
        Must equal ``W.shape[2:]`` when given.
    output_padding : sequence of int, optional
        Added at the end of each axis, each ``< max(stride, dilation)``; with
        ``output_shape`` it only enters the computed padding.
    output_shape : sequence of int, optional
        Spatial output size; generates the pads (``pads`` is then ignored).
    pads : sequence of int, optional
        ``[x1_begin, ..., xn_begin, x1_end, ..., xn_end]``, >= 0; not
        together with a non-NOTSET ``auto_pad``.
    strides : sequence of int, optional
        Per spatial axis, default 1.

    Returns
    -------
    numpy.ndarray
        ``Y``, ``(N, M, O1, ..., On)``.

    Raises
    ------
    ValueError, TypeError
        Attribute values that the specification does not allow, ``W`` or
        ``B`` inconsistent with ``X``, or ``kernel_shape`` different from
        ``W.shape[2:]``.

    Examples
    --------
    The specification's ``test_convtranspose_autopad_same``, first row:

    >>> import numpy as np
    >>> from numba_deconv.compat.onnx import conv_transpose
    >>> X = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> W = np.ones((1, 2, 3, 3))
    >>> conv_transpose(X, W, auto_pad="SAME_UPPER", strides=[2, 2])[0, 0, 0]
    array([0., 0., 1., 1., 3., 2.])
    """
    key = call_key(X, W, B, auto_pad, dilations, group, kernel_shape, output_padding,
                   output_shape, pads, strides)
    checked = _CHECKED.get(key)
    if checked is None:
        X = _as_numeric("X", X)
        W = _as_numeric("W", W)
        if B is not None:
            B = _as_numeric("B", B)
        checked = _check(X, W, B, auto_pad, dilations, group, kernel_shape, output_padding,
                         output_shape, pads, strides)
        _CHECKED.keep(key, checked)
    return _run(checked, X, W, B)


class _Checked(typing.NamedTuple):
    """What :func:`_check` works out for a call shape: the output's
    channels ``m`` and sizes ``out``, and, where ``X`` has positions and
    channels (not ``empty``), :func:`numba_deconv.conv_transpose`'s
    arguments for the part of the output it computes (``crop``, ``sizes``)
    and the zero borders around it (``lead``, ``trail``)."""

    dtype: np.dtype
    m: int
    out: tuple
    empty: bool
    kwargs: dict  # stride, dilation, groups
    crop: tuple
    sizes: tuple
    lead: tuple
    trail: tuple


#: :func:`_check`'s results per call shape (:mod:`._memo`).
_CHECKED = CallMemo()


def _check(X, W, B, auto_pad, dilations, group, kernel_shape, output_padding, output_shape,
           pads, strides) -> _Checked:
    """:func:`conv_transpose`'s checks of the operator's inputs (numeric
    arrays) and attributes, and the padding arithmetic."""
    try:
        dtype = working_dtype(X.dtype, W.dtype, *([] if B is None else [B.dtype]))
    except TypeError as err:
        raise TypeError(f"ConvTranspose: X, W, B: {err}") from None
    if X.ndim < 3:
        raise ValueError(
            f"ConvTranspose: X must be (N, C, D1, ..., Dn) with n >= 1; got shape {X.shape}")
    if W.ndim != X.ndim:
        raise ValueError(
            f"ConvTranspose: W must be (C, M/group, k1, ..., kn) with the rank of X "
            f"({X.ndim}); got shape {W.shape}")
    rank = X.ndim - 2
    mode = _auto_pad(auto_pad)
    if W.shape[0] != X.shape[1]:
        raise ValueError(
            f"ConvTranspose: W.shape[0] = {W.shape[0]} must equal the {X.shape[1]} "
            f"channels of X; W is (C, M/group, k1, ..., kn)")
    kernel = W.shape[2:]
    if W.shape[1] < 1 or min(kernel) < 1:
        raise ValueError(
            f"ConvTranspose: W has shape {W.shape}; M/group (W.shape[1]) and the kernel "
            f"sizes (W.shape[2:]) must be >= 1")
    if kernel_shape is not None:
        given = _ints("kernel_shape", kernel_shape, rank, 1, 1)
        if given != tuple(kernel):
            raise ValueError(
                f"ConvTranspose: kernel_shape={list(given)} does not match W's kernel "
                f"{list(kernel)} (W.shape[2:]); drop kernel_shape or fix W")
    s = _ints("strides", strides, rank, 1, 1, MAX_STEP)
    d = _ints("dilations", dilations, rank, 1, 1, MAX_STEP)
    op = _ints("output_padding", output_padding, rank, 0, 0)
    if not is_int(group) or group < 1:
        raise ValueError(f"ConvTranspose: group={group!r} must be an int >= 1")
    if X.shape[1] % group:
        raise ValueError(
            f"ConvTranspose: group={group} does not divide the {X.shape[1]} channels of X "
            f"(groups={group} must divide the input channels C)")
    m = W.shape[1] * group
    if B is not None and B.shape != (m,):
        raise ValueError(
            f"ConvTranspose: B has shape {B.shape}; expected ({m},), one value per output "
            f"channel (M = W.shape[1] * group = {W.shape[1]} * {group})")
    for i, (o, si, di) in enumerate(zip(op, s, d)):
        if o >= max(si, di):
            raise ValueError(
                f"ConvTranspose: output_padding={list(op)} must be smaller than "
                f"max(stride, dilation) = {max(si, di)} on axis {i}")
    if pads is not None:
        pads = _ints("pads", pads, 2 * rank, 0, 0)
        if mode != "NOTSET" and any(pads):
            raise ValueError(
                f"ConvTranspose: pads={list(pads)} cannot be used together with "
                f"auto_pad={mode!r}; use one of them")
    in_spatial = X.shape[2:]
    full = tuple((i - 1) * si + di * (k - 1) + 1
                 for i, si, di, k in zip(in_spatial, s, d, kernel))

    if output_shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is not None:
            target = _ints("output_shape", output_shape, rank, 1, 1)
        else:
            target = tuple(i * si for i, si in zip(in_spatial, s))
        before, after = [], []
        for f, o, t in zip(full, op, target):
            total = f + o - t
            if mode == "SAME_UPPER":
                before.append(total // 2)
                after.append(total - total // 2)
            else:
                before.append(total - total // 2)
                after.append(total // 2)
    elif mode == "VALID" or pads is None:
        before, after = [0] * rank, [0] * rank
    else:
        before, after = list(pads[:rank]), list(pads[rank:])
    out = tuple(f + o - b - a for f, o, b, a in zip(full, op, before, after))
    for i, o in enumerate(out):
        if o < 1:
            raise ValueError(
                f"ConvTranspose: axis {i} has output size {o}: stride {s[i]} * "
                f"(input {in_spatial[i]} - 1) + output_padding {op[i]} + kernel span "
                f"{full[i] - (in_spatial[i] - 1) * s[i]} - pads {before[i]} - "
                f"{after[i]} must be >= 1")

    # The output is the window [before, before + out) of the full scatter
    # result (length `full`, zeros beyond it). conv_transpose takes the part
    # that overlaps [0, full + max(s, d) - 1); zeros pad the rest, if any.
    crop = []
    sizes = []
    lead = []
    trail = []
    for i in range(rank):
        start = max(before[i], 0)
        stop = before[i] + out[i]
        reach = full[i] + max(s[i], d[i]) - 1
        inner_stop = min(stop, reach)
        lead.append(start - before[i])
        trail.append(stop - max(inner_stop, start))
        sizes.append(max(inner_stop - start, 0))
        crop.append((start, max(full[i] - inner_stop, 0)))
    # No input positions or channels: the sums are empty, Y is the bias.
    empty = min(in_spatial) == 0 or X.shape[1] == 0
    return _Checked(dtype, m, out, empty, dict(stride=s, dilation=d, groups=group),
                    tuple(crop), tuple(sizes), tuple(lead), tuple(trail))


def _run(checked: _Checked, X, W, B):
    """``Y`` of a checked call."""
    from ..api import conv_transpose as _conv_transpose

    rank = len(checked.out)
    if checked.empty:
        y = np.zeros((X.shape[0], checked.m, *checked.out), dtype=checked.dtype)
        if B is not None:
            y += B.reshape(-1, *(1,) * rank)
        return y
    kwargs, sizes = checked.kwargs, checked.sizes
    if not any(checked.lead) and not any(checked.trail):
        return _conv_transpose(X, W, B, padding=checked.crop, output_size=sizes, **kwargs)
    # Rare: negative pads from the specification's formulas (zero borders).
    if all(sizes):
        inner = _conv_transpose(X, W, B, padding=checked.crop, output_size=sizes, **kwargs)
        dtype = inner.dtype
    else:
        inner = None
        corner = (slice(None), slice(None)) + (slice(0, 1),) * rank
        dtype = _conv_transpose(X[corner], W, B, **kwargs).dtype
    y = np.zeros((X.shape[0], checked.m, *checked.out), dtype=dtype)
    if B is not None:
        y += np.asarray(B).reshape(-1, *(1,) * rank)
    if inner is not None:
        y[(slice(None), slice(None),
           *(slice(lb, lb + n) for lb, n in zip(checked.lead, sizes)))] = inner
    return y
