"""``as_linear_operator``: a convolution and its exact adjoint for SciPy's solvers.

SciPy is an optional dependency: this module imports it only when an
operator is made, and ``import numba_deconv`` never does.
"""

from __future__ import annotations

import math

import numpy as np

from . import _dispatch, api
from ._plan import as_array, working_dtype

_FORWARDS = ("conv_transpose", "conv")
_ARGS = {"conv_transpose": _dispatch._ARG_NAMES, "conv": _dispatch._CONV_ARG_NAMES}
_DEFAULTS = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1,
             "output_size": None, "padding_mode": "zeros", "data_format": "channels_first"}


def as_linear_operator(weight, input_shape, *, forward="conv_transpose", dtype=None,
                       **kwargs):
    """A ``scipy.sparse.linalg.LinearOperator`` for ``conv_transpose`` or ``conv``.

    ``matvec`` applies the forward function (without bias) to a flattened
    array of ``input_shape``; ``rmatvec`` applies its exact adjoint, for
    complex dtypes the Hermitian adjoint (the conjugate transpose), so
    SciPy's solvers (``lsqr``, ``cg`` on the normal equations, ``gmres``)
    converge. The call is checked and planned once, when the operator is
    made; each product then runs the planned kernels on weights laid out
    in advance.

    Parameters
    ----------
    weight : array_like
        The weight of the forward function (the adjoint uses the same).
    input_shape : sequence of int
        The shape of the forward function's input, batch and channels
        included (or unbatched), in ``data_format``.
    forward : {"conv_transpose", "conv"}
    dtype : dtype, optional
        The dtype to compute in (default: the weight's working dtype,
        float64 for integer weights); the weight is cast to it.
    **kwargs
        The forward function's arguments: ``stride``, ``padding``,
        ``dilation``, ``groups``, ``padding_mode``, ``data_format``, and for
        ``conv_transpose`` also ``output_padding`` or ``output_size``.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of shape ``(output size, input size)``.

    Raises
    ------
    ValueError, TypeError
        For an unknown ``forward`` or argument, and as the forward function
        does for inconsistent arguments.
    ImportError
        Without SciPy.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> w = np.array([[[1.0, 2.0, 1.0]]])
    >>> A = numba_deconv.as_linear_operator(w, (1, 1, 4), stride=2)
    >>> A.shape
    (9, 4)
    >>> A.matvec(np.array([1.0, 0.0, 0.0, 1.0]))
    array([1., 2., 1., 0., 0., 0., 1., 2., 1.])
    >>> A.rmatvec(np.ones(9))
    array([4., 4., 4., 4.])
    """
    from scipy.sparse.linalg import LinearOperator

    if forward not in _FORWARDS:
        raise ValueError(
            f"forward={forward!r} is not one of {', '.join(repr(f) for f in _FORWARDS)}")
    unknown = sorted(set(kwargs) - set(_ARGS[forward]))
    if unknown:
        raise TypeError(
            f"{unknown[0]!r} is not an argument of a linear {forward}; use "
            f"{', '.join(_ARGS[forward])} (no bias: an operator is linear)")
    weight = as_array("weight", weight)
    try:
        input_shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape={input_shape!r} must be a sequence of ints") from None
    dtype = working_dtype(weight.dtype if dtype is None else np.dtype(dtype))
    if weight.dtype.kind == "c" and dtype.kind != "c":
        raise TypeError(
            f"dtype={dtype} would drop the imaginary part of the complex weight; use a "
            f"complex dtype")
    weight = np.ascontiguousarray(weight, dtype=dtype)
    adjoint_weight = weight.conj() if dtype.kind == "c" else weight
    args = {name: kwargs.get(name, _DEFAULTS[name]) for name in _ARGS[forward]}
    if forward == "conv":
        apply, adjoint, out_shape = _conv_pair(weight, adjoint_weight, input_shape, dtype,
                                               args)
    else:
        apply, adjoint, out_shape = _conv_transpose_pair(weight, adjoint_weight,
                                                         input_shape, dtype, args)
    return LinearOperator(
        (math.prod(out_shape), math.prod(input_shape)), dtype=dtype,
        matvec=lambda v: apply(np.asarray(v, dtype).reshape(input_shape)).ravel(),
        rmatvec=lambda v: adjoint(np.asarray(v, dtype).reshape(out_shape)).ravel())


def _conv_transpose_pair(weight, adjoint_weight, input_shape, dtype, args):
    """conv_transpose and its adjoint conv, whose output is cropped to the
    input's size (outputs past the last reach of the transposed
    convolution's taps, where output_padding >= stride, have no input)."""
    call = _dispatch.cpu_call(input_shape, dtype, weight.shape, dtype, None,
                              tuple(args.values()))
    plan = call.plan
    g = plan.geometry
    conv_args = dict(stride=g.stride, padding=tuple(zip(g.pad_before, g.pad_after)),
                     dilation=g.dilation, groups=g.groups, padding_mode=plan.padding_mode,
                     data_format=args["data_format"])
    adjoint_call = _dispatch.conv_call(plan.out_shape, dtype, weight.shape, dtype, None,
                                       tuple(conv_args.values()))
    conv_weights = api.conv_weights(adjoint_call, adjoint_weight)
    crop = (Ellipsis,) + tuple(slice(0, i) for i in g.in_spatial) + (
        (slice(None),) if plan.channels_last else ())

    def apply(x):
        return api.conv_transpose(x, weight, **args)

    def adjoint(y):
        return np.ascontiguousarray(
            api.apply_conv(adjoint_call, conv_weights, y, adjoint_weight, None, None)[crop])
    return apply, adjoint, plan.out_shape


def _conv_pair(weight, adjoint_weight, input_shape, dtype, args):
    """conv and its adjoint conv_transpose, with the output size that maps
    back to the input's."""
    call = _dispatch.conv_call(input_shape, dtype, weight.shape, dtype, None,
                               tuple(args.values()))
    plan = call.plan
    g = plan.geometry
    conv_weights = api.conv_weights(call, weight)
    transpose_args = dict(stride=g.stride, padding=tuple(zip(g.pad_before, g.pad_after)),
                          output_padding=0, dilation=g.dilation, groups=g.groups,
                          output_size=g.out_spatial, padding_mode=plan.padding_mode,
                          data_format=args["data_format"])

    def apply(x):
        return api.apply_conv(call, conv_weights, x, weight, None, None)

    def adjoint(y):
        return api.conv_transpose(y, adjoint_weight, **transpose_args)
    return apply, adjoint, plan.out_shape
