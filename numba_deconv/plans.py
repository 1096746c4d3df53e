"""Plans: a call checked and laid out once, then run as often as wanted.

An iterative solver or an inference loop repeats one call with one weight
on new data. :func:`plan` checks the arguments once, picks the kernels,
lays the weights out once for them, on the first call that runs each
kernel (the register tiles' weight table, each phase's flipped taps), and
returns a :class:`Plan`, whose calls then do only the arithmetic; its :meth:`Plan.adjoint` runs the exact adjoint
(the Hermitian adjoint for complex data), as the SciPy operator needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _dispatch, api
from ._params import shape_tuple
from ._plan import as_array, check_numeric, dtype_argument, working_dtype
from ._typing import ArrayLike, DTypeLike, Forward

FORWARDS = ("conv_transpose", "conv")
#: The arguments of each forward function, in the dispatcher's order.
ARGS = {"conv_transpose": _dispatch._ARG_NAMES, "conv": _dispatch._CONV_ARG_NAMES}
DEFAULTS = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1,
            "output_size": None, "padding_mode": "zeros", "data_format": "channels_first"}
#: numpy.ndarray.flags.num bits of an x the kernels take as it is.
_READY = api.KERNEL_READY


class Plan:
    """``conv_transpose`` or ``conv`` with one weight (and bias) on inputs
    of one shape, planned once; made by :func:`plan`.

    Attributes
    ----------
    forward : str
        ``"conv_transpose"`` or ``"conv"``.
    input_shape, output_shape : tuple of int
        Of the forward function, in the plan's data format.
    dtype : numpy.dtype
        The working dtype: inputs are cast to it, results have it.
    """

    def __init__(self, forward, weight, bias, input_shape, dtype, args):
        self.forward, self.dtype, self.input_shape = forward, dtype, input_shape
        # Copies: the laid-out weights must not go stale if the caller's change.
        self._weight = np.array(weight, dtype=dtype, order="C")
        self._bias = None if bias is None else np.array(bias, dtype=dtype, order="C")
        adjoint_weight = self._weight.conj() if dtype.kind == "c" else self._weight
        bias_meta = None if bias is None else (self._bias.shape, dtype)
        if forward == "conv_transpose":
            self._call = _dispatch.cpu_call(input_shape, dtype, weight.shape, dtype, bias_meta,
                                            tuple(args.values()))
            plan_ = self._call.plan
            g = plan_.geometry
            _check_positions(input_shape, g.in_spatial)
            self._adjoint_call = _dispatch.conv_call(
                plan_.out_shape, dtype, weight.shape, dtype, None,
                (g.stride, tuple(zip(g.pad_before, g.pad_after)), g.dilation, g.groups,
                 plan_.padding_mode, args["data_format"]))
            # Outputs past the last reach of the taps (output_padding >=
            # stride) have no input: the adjoint's conv is cropped to x.
            self._crop = (Ellipsis,) + tuple(slice(0, i) for i in g.in_spatial) + (
                (slice(None),) if plan_.channels_last else ())
            self._forward_weights = {}   # the kernels' layouts, made on first use
            self._conv_call, self._conv_weight = self._adjoint_call, adjoint_weight
        else:
            self._call = _dispatch.conv_call(input_shape, dtype, weight.shape, dtype, bias_meta,
                                             tuple(args.values()))
            plan_ = self._call.plan
            g = plan_.geometry
            _check_positions(input_shape, g.out_spatial)  # the adjoint's output: conv's input
            self._adjoint_call = _dispatch.cpu_call(
                plan_.out_shape, dtype, weight.shape, dtype, None,
                (g.stride, tuple(zip(g.pad_before, g.pad_after)), 0, g.dilation, g.groups,
                 g.out_spatial, plan_.padding_mode, args["data_format"]))
            self._conv_call, self._conv_weight = self._call, self._weight
            self._adjoint_weights = {}
        self._adjoint_weight = adjoint_weight
        self._conv_laid_out = None  # the conv kernels' weights (_conv_weights)
        self.output_shape = plan_.out_shape
        self._tiny = None  # conv_transpose's tiny-call kernel and arguments, once compiled

    def __call__(self, x: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """The forward function of ``x`` (of ``input_shape``), with the bias.

        Parameters
        ----------
        x : array_like
            Of shape ``input_shape``; cast to ``dtype``.
        out : numpy.ndarray, optional
            Of ``output_shape`` and ``dtype``; filled and returned.

        Returns
        -------
        numpy.ndarray
        """
        if self.forward == "conv":
            x = self._checked("x", x, self.input_shape)
            return api.apply_conv(self._call, self._conv_weights(), x, self._weight,
                                  self._bias, out)
        # A tiny call straight to its compiled kernel (see
        # api.apply_conv_transpose), for a kernel-ready x of the planned
        # shape: each check inline, each argument made once, no frame
        # between this one and the kernel's.
        if (self._tiny is not None and type(x) is np.ndarray
                and x.shape == self.input_shape and x.dtype is self.dtype
                and x.flags.num & _READY == _READY):
            kernel, w, bias, geometry = self._tiny
            if out is None:
                result = np.empty(self.output_shape, self.dtype)
                kernel(x, w, bias, result, geometry)
                return result
            # api.writes_in_place, inline (through it: 3.6 against 2.8 us
            # a call); the plan's weight and bias are its own copies, so
            # only x can overlap out.
            if (type(out) is np.ndarray and out.shape == self.output_shape
                    and out.dtype is self.dtype and out.flags.num & _READY == _READY
                    and not np.may_share_memory(out, x)):
                kernel(x, w, bias, out, geometry)
                return out
        x = self._checked("x", x, self.input_shape)
        result = api.apply_conv_transpose(self._call, x, self._weight, self._bias, out,
                                          self._forward_weights)
        runner = self._call.serial
        if self._tiny is None and runner and not runner.recycled:
            self._tiny = (runner.kernel, self._weight.reshape(runner.w_shape),
                          self._call.no_bias if self._bias is None else self._bias,
                          runner.geometry)
        return result

    def adjoint(self, y: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """The exact adjoint of the forward function's linear part (no
        bias) at ``y`` (of ``output_shape``): ``<p(x) - p(0), y> = <x,
        p.adjoint(y)>``, conjugated for complex data.

        Parameters
        ----------
        y : array_like
            Of shape ``output_shape``.
        out : numpy.ndarray, optional
            Of ``input_shape`` and ``dtype``.

        Returns
        -------
        numpy.ndarray
        """
        y = self._checked("y", y, self.output_shape)
        if self.forward == "conv":
            return api.apply_conv_transpose(self._adjoint_call, y, self._adjoint_weight, None,
                                            out, self._adjoint_weights)
        result = api.apply_conv(self._adjoint_call, self._conv_weights(), y,
                                self._adjoint_weight, None, None)[self._crop]
        if out is None:
            return np.ascontiguousarray(result)
        if not isinstance(out, np.ndarray) or out.shape != self.input_shape or (
                out.dtype != self.dtype):
            raise ValueError(
                f"out must be a numpy.ndarray of shape {self.input_shape} and dtype "
                f"{self.dtype}")
        out[...] = result
        return out

    def _conv_weights(self):
        """The weights of the plan's ``conv`` (the forward function's or the
        adjoint's) as its kernels read them: laid out on first use (a
        ``conv_transpose`` plan used forward only never compiles the
        ``conv`` kernels), kept from then on, but not while they wait for
        a kernel that is still compiling
        (:func:`numba_deconv.api.conv_weights_laid_out`)."""
        if self._conv_laid_out is not None:
            return self._conv_laid_out
        weights = api.conv_weights(self._conv_call, self._conv_weight)
        if api.conv_weights_laid_out(self._conv_call, weights):
            self._conv_laid_out = weights
        return weights

    def _checked(self, name, array, shape):
        array = as_array(name, array)
        check_numeric(name, array.dtype)
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}; this plan takes {shape}")
        return array

    def __repr__(self):
        return (f"Plan({self.forward}, {self.input_shape} -> {self.output_shape}, "
                f"{self.dtype})")


def _check_positions(input_shape, spatial):
    """A plan's adjoint maps onto the input: an input without positions
    has no adjoint to plan (the functions themselves take one)."""
    if 0 in spatial:
        raise ValueError(
            f"input_shape={input_shape} has a spatial dim without positions; a plan needs "
            f"at least one in every spatial dim (conv and conv_transpose themselves take "
            f"such inputs)")


def plan(weight: ArrayLike, input_shape: Sequence[int], dtype: DTypeLike = None,
         bias: ArrayLike | None = None, *, forward: Forward = "conv_transpose",
         **kwargs) -> Plan:
    """Plan ``conv_transpose`` (or ``conv``) with ``weight`` on inputs of
    ``input_shape``, for repeated calls.

    The arguments are checked, the kernels chosen and the weights laid out
    once (the plan keeps its own copy of the weight and bias); each call of
    the plan then only computes, as the same call of the function would,
    bit for bit. CPU and NumPy arrays only.

    Parameters
    ----------
    weight : array_like
        The forward function's weight.
    input_shape : sequence of int
        The shape of its input (batched or not, in ``data_format``).
    dtype : dtype, optional
        The working dtype (default: that of the weight and bias, float64 for
        integers); the weight, bias and every input are cast to it.
    bias : array_like, optional
        Added by the forward call (not by the adjoint).
    forward : {"conv_transpose", "conv"}
    **kwargs
        The forward function's arguments: ``stride``, ``padding``,
        ``dilation``, ``groups``, ``padding_mode``, ``data_format``, and for
        ``conv_transpose`` ``output_padding`` or ``output_size``.

    Returns
    -------
    Plan
        ``p(x, out=None)`` runs the forward function, ``p.adjoint(y,
        out=None)`` its exact adjoint.

    Raises
    ------
    ValueError, TypeError
        For an unknown ``forward`` or argument, and as the forward function
        does for inconsistent arguments.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> w = np.array([[[1.0, 2.0, 1.0]]])
    >>> p = numba_deconv.plan(w, (1, 1, 3), stride=2)
    >>> p(np.array([[[1.0, 0.0, 1.0]]]))
    array([[[1., 2., 1., 0., 1., 2., 1.]]])
    >>> p.adjoint(np.ones((1, 1, 7)))
    array([[[4., 4., 4.]]])
    """
    if forward not in FORWARDS:
        raise ValueError(
            f"forward={forward!r} is not one of {', '.join(repr(f) for f in FORWARDS)}")
    unknown = sorted(set(kwargs) - set(ARGS[forward]))
    if unknown:
        raise TypeError(f"{unknown[0]!r} is not an argument of {forward}; use "
                        f"{', '.join(ARGS[forward])}")
    weight = as_array("weight", weight)
    check_numeric("weight", weight.dtype)
    bias = None if bias is None else as_array("bias", bias)
    if bias is not None:
        check_numeric("bias", bias.dtype)
    input_shape = shape_tuple("input_shape", input_shape)
    if dtype is None:
        dtype = working_dtype(np.result_type(weight, *([] if bias is None else [bias])))
    else:
        dtype = working_dtype(dtype_argument(dtype))
    if np.result_type(weight, *([] if bias is None else [bias])).kind == "c" and (
            dtype.kind != "c"):
        raise TypeError(f"dtype={dtype} would drop the imaginary part of the complex "
                        f"weight or bias; use a complex dtype")
    args = {name: kwargs.get(name, DEFAULTS[name]) for name in ARGS[forward]}
    return Plan(forward, weight, bias, input_shape, dtype, args)
