"""``as_linear_operator``: a convolution and its exact adjoint for SciPy's solvers.

SciPy is an optional dependency: this module imports it only when an
operator is made, and ``import numba_deconv`` never does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._params import shape_tuple
from ._plan import dtype_argument
from .plans import ARGS, plan
from ._typing import ArrayLike, DTypeLike, Forward

if TYPE_CHECKING:
    import scipy.sparse.linalg


def as_linear_operator(weight: ArrayLike, input_shape: Sequence[int], *,
                       forward: Forward = "conv_transpose", dtype: DTypeLike = None,
                       **kwargs) -> scipy.sparse.linalg.LinearOperator:
    """A ``scipy.sparse.linalg.LinearOperator`` for ``conv_transpose`` or ``conv``.

    ``matvec`` applies the forward function (without bias) to a flattened
    array of ``input_shape``; ``rmatvec`` applies its exact adjoint, for
    complex dtypes the Hermitian adjoint (the conjugate transpose), so
    SciPy's solvers (``lsqr``, ``cg`` on the normal equations, ``gmres``)
    converge. The call is checked and planned once, when the operator is
    made (a :class:`numba_deconv.Plan`); each product then runs the
    planned kernels on weights laid out in advance.

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

    unknown = sorted(set(kwargs) - set(ARGS.get(forward, kwargs)))
    if unknown:  # (an unknown forward is plan's to report)
        raise TypeError(
            f"{unknown[0]!r} is not an argument of a linear {forward}; use "
            f"{', '.join(ARGS[forward])} (no bias: an operator is linear)")
    input_shape = shape_tuple("input_shape", input_shape)
    if dtype is not None:
        dtype = dtype_argument(dtype)
    p = plan(weight, input_shape, dtype, forward=forward, **kwargs)
    in_shape, out_shape, dtype = p.input_shape, p.output_shape, p.dtype
    return LinearOperator(
        (math.prod(out_shape), math.prod(in_shape)), dtype=dtype,
        matvec=lambda v: p(_vector("matvec", v, dtype).reshape(in_shape)).ravel(),
        rmatvec=lambda v: p.adjoint(_vector("rmatvec", v, dtype).reshape(out_shape)).ravel())


def _vector(name: str, v, dtype) -> np.ndarray:
    """A product's vector in ``dtype``; a non-numeric one (objects, strings,
    which NumPy would cast to NaN or fail on) is an error naming it."""
    v = np.asarray(v)
    if v.dtype.kind not in "biufc":
        raise TypeError(
            f"{name}: the vector has dtype {v.dtype}, which is not numeric; pass a float "
            f"or complex array")
    return v.astype(dtype, copy=False)
