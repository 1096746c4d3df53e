"""numba_deconv.as_linear_operator: conv / conv_transpose as a
scipy.sparse.linalg.LinearOperator of shape (prod(output shape),
prod(input_shape)); matvec is the forward function (no bias) on the
flattened input, rmatvec its Hermitian adjoint (the other function with
conj(weight); for forward="conv" with the output_size that maps back to
input_shape).
"""

from __future__ import annotations

import numpy as np
import pytest

scipy_linalg = pytest.importorskip("scipy.sparse.linalg")

import numba_deconv as nd  # noqa: E402
from helpers import random_array  # noqa: E402
from reference import conv_pads, conv_ref, conv_transpose_mode_ref, explicit_pads  # noqa: E402

MODES = ("zeros", "circular", "reflect", "replicate")


def _vec(rng, n, dtype):
    return random_array(rng, (n,), dtype)


@pytest.mark.parametrize("input_shape,w_shape,kwargs,out_shape", [
    ((2, 3, 8), (4, 3, 3), dict(stride=2, padding=1), (2, 4, 4)),
    ((3, 7, 6), (2, 3, 2, 3), dict(padding="same"), (2, 7, 6)),          # unbatched
    ((1, 4, 5, 4), (4, 2, 3, 3), dict(groups=2, padding=((1, 0), (2, 1)),
                                      padding_mode="reflect"), (1, 4, 4, 5)),
])
def test_conv_operator_shape_and_matvec(input_shape, w_shape, kwargs, out_shape, rng):
    w = rng.standard_normal(w_shape)
    A = nd.as_linear_operator(w, input_shape, forward="conv", **kwargs)
    assert isinstance(A, scipy_linalg.LinearOperator)
    assert A.shape == (int(np.prod(out_shape)), int(np.prod(input_shape)))
    x = rng.standard_normal(input_shape)
    y = nd.conv(x, w, **kwargs)
    assert y.shape == out_shape
    np.testing.assert_allclose(A.matvec(x.ravel()), y.ravel(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(A @ x.ravel(), y.ravel(), rtol=1e-13, atol=1e-13)
    # rmatvec: conv_transpose back to input_shape
    u = rng.standard_normal(out_shape)
    back = nd.conv_transpose(u, w, output_size=input_shape[-(w.ndim - 2):], **kwargs)
    np.testing.assert_allclose(A.rmatvec(u.ravel()), back.ravel(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(A.H @ u.ravel(), back.ravel(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("input_shape,w_shape,kwargs,out_shape", [
    ((2, 3, 4), (3, 2, 3), dict(stride=2), (2, 2, 9)),
    ((2, 3, 3), (2, 1, 2, 2), dict(stride=2, groups=2, output_padding=1), (2, 7, 7)),
    ((1, 2, 5, 4), (2, 3, 3, 2), dict(stride=(2, 1), padding=1,
                                      padding_mode="circular"), (1, 3, 9, 3)),
])
def test_conv_transpose_operator_shape_and_matvec(input_shape, w_shape, kwargs,
                                                  out_shape, rng):
    w = rng.standard_normal(w_shape)
    A = nd.as_linear_operator(w, input_shape, **kwargs)     # forward defaults to it
    assert A.shape == (int(np.prod(out_shape)), int(np.prod(input_shape)))
    x = rng.standard_normal(input_shape)
    y = nd.conv_transpose(x, w, **kwargs)
    assert y.shape == out_shape
    np.testing.assert_allclose(A.matvec(x.ravel()), y.ravel(), rtol=1e-13, atol=1e-13)
    conv_kwargs = {k: v for k, v in kwargs.items() if k != "output_padding"}
    u = rng.standard_normal(out_shape)
    np.testing.assert_allclose(A.rmatvec(u.ravel()), nd.conv(u, w, **conv_kwargs).ravel(),
                               rtol=1e-13, atol=1e-13)


def test_matvec_accepts_column_vectors_and_matmat(rng):
    w = rng.standard_normal((2, 1, 3))
    A = nd.as_linear_operator(w, (1, 1, 6), forward="conv", padding=1)
    x = rng.standard_normal((6, 1))
    assert A.matvec(x).shape == (12, 1)        # 2 output channels x 6
    X = rng.standard_normal((6, 3))
    M = A.matmat(X)
    assert M.shape == (12, 3)
    for j in range(3):
        np.testing.assert_allclose(M[:, j], A.matvec(X[:, j]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("forward", ["conv", "conv_transpose"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_hermitian_adjoint_identity(mode, forward, dtype, rng):
    """vdot(A x, y) == vdot(x, A^H y) for every mode, real and complex."""
    w = random_array(rng, (4, 1, 3, 2), dtype)
    if forward == "conv":
        input_shape = (2, 2, 7, 5)
        kwargs = dict(stride=(2, 3), dilation=(1, 2), padding=((2, 1), (1, 2)), groups=2,
                      padding_mode=mode)
    else:
        input_shape = (2, 4, 4, 3)
        kwargs = dict(stride=(2, 1), padding=((1, 2), (1, 0)), output_padding=(1, 0),
                      groups=2, padding_mode=mode)
    A = nd.as_linear_operator(w, input_shape, forward=forward, **kwargs)
    x = _vec(rng, A.shape[1], dtype)
    y = _vec(rng, A.shape[0], dtype)
    x0, y0 = x.copy(), y.copy()
    ax, ahy = A.matvec(x), A.rmatvec(y)
    assert ax.shape == (A.shape[0],) and ahy.shape == (A.shape[1],)
    np.testing.assert_array_equal(x, x0)          # the vectors stay untouched
    np.testing.assert_array_equal(y, y0)
    lhs = np.vdot(ax.astype(np.complex128), y.astype(np.complex128))
    rhs = np.vdot(x.astype(np.complex128), ahy.astype(np.complex128))
    # sum over outputs of |y| times the magnitudes of their terms is at most
    # sum|y| * sum|w| * max|x| * (folds: at most 1 + pb + pa per dim)
    eps = float(np.finfo(dtype).eps)
    scale = np.abs(w).sum() * np.abs(x).max() * np.abs(y).sum() * 4 * 3
    assert abs(lhs - rhs) <= 16 * eps * scale, (lhs, rhs, abs(lhs - rhs) / scale)


@pytest.mark.parametrize("mode", MODES)
def test_operator_matches_the_oracles(mode, rng):
    """Independent of the library's functions: matvec is conv_ref, rmatvec
    the mode adjoint with conj(w) (complex128)."""
    w = random_array(rng, (2, 2, 3), np.complex128)
    input_shape = (1, 2, 7)
    A = nd.as_linear_operator(w, input_shape, forward="conv", stride=2, padding=[(2, 1)],
                              padding_mode=mode)
    x = random_array(rng, input_shape, np.complex128)
    kw = dict(stride=(2,), dilation=(1,), pad_before=(2,), pad_after=(1,),
              padding_mode=mode)
    expected = conv_ref(x, w, **kw)
    np.testing.assert_allclose(A.matvec(x.ravel()), expected.ravel(), rtol=1e-12,
                               atol=1e-12)
    y = random_array(rng, expected.shape, np.complex128)
    ct = explicit_pads(expected.shape[2:], (3,), stride=2, padding=[(2, 1)],
                       output_size=(7,))
    back = conv_transpose_mode_ref(y, np.conj(w), output_padding=ct["output_padding"],
                                   **kw)
    np.testing.assert_allclose(A.rmatvec(y.ravel()), back.ravel(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("size", [5, 7, 8])
def test_same_padding_adjoint_for_any_size(size, rng):
    """conv's SAME pads depend on the input size (here 5, 7: not a multiple
    of the stride): the adjoint must use conv's resolved pads, not
    conv_transpose's own "same"."""
    w = rng.standard_normal((2, 1, 3))
    A = nd.as_linear_operator(w, (1, 1, size), forward="conv", stride=2, padding="same")
    p = conv_pads((size,), (3,), stride=2, padding="same")
    assert A.shape == (2 * p["out_spatial"][0], size)
    x = rng.standard_normal(A.shape[1])
    y = rng.standard_normal(A.shape[0])
    assert np.isclose(np.vdot(A.matvec(x), y), np.vdot(x, A.rmatvec(y)), rtol=1e-12,
                      atol=1e-12)


def test_dtype(rng):
    w = rng.standard_normal((1, 1, 3))
    assert nd.as_linear_operator(w, (1, 1, 5), forward="conv").dtype == np.float64
    assert nd.as_linear_operator(w.astype(np.complex128), (1, 1, 5),
                                 forward="conv").dtype == np.complex128
    w32 = w.astype(np.float32)
    assert nd.as_linear_operator(w32, (1, 1, 5), forward="conv").dtype == np.float32
    A = nd.as_linear_operator(w32, (1, 1, 5), forward="conv", dtype=np.complex64)
    assert A.dtype == np.complex64
    assert A.matvec(np.ones(5, np.complex64)).dtype == np.complex64


@pytest.mark.parametrize("mode", MODES)
def test_adjoint_where_output_padding_reaches_past_the_taps(mode, rng):
    """dilation 2 > stride 1 allows output_padding 1: the last output has no
    tap (zero), and the adjoint conv of the longer output is cut back to the
    input's size."""
    w = rng.standard_normal((2, 2, 3))
    A = nd.as_linear_operator(w, (1, 2, 6), stride=1, dilation=2, padding=1,
                              output_padding=1, padding_mode=mode)
    x = rng.standard_normal(A.shape[1])
    y = rng.standard_normal(A.shape[0])
    assert A.shape == (2 * (5 - 2 + 4 + 1 + 1), 12)
    assert np.isclose(np.vdot(A.matvec(x), y), np.vdot(x, A.rmatvec(y)), rtol=1e-12,
                      atol=1e-12)


def _lsqr_errors(A, x_true, b, iters):
    errs = []
    for it in iters:
        sol = scipy_linalg.lsqr(A, b, atol=0, btol=0, iter_lim=it)[0]
        errs.append(np.linalg.norm(sol - x_true) / np.linalg.norm(x_true))
    return errs


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_lsqr_recovers_a_signal(mode, rng):
    """An overdetermined, well-posed system: a 2-channel 1-D signal seen
    through a stride-2 transposed convolution (3 output channels) is
    recovered by lsqr, the error shrinking with the iterations."""
    w = rng.standard_normal((2, 3, 4))
    input_shape = (1, 2, 12)
    A = nd.as_linear_operator(w, input_shape, stride=2, padding=1, padding_mode=mode)
    assert A.shape[0] > A.shape[1]
    x_true = rng.standard_normal(A.shape[1])
    b = A.matvec(x_true)
    errs = _lsqr_errors(A, x_true, b, (2, 8, 60))
    assert errs[0] > errs[1] > errs[2] or errs[2] < 1e-10, errs
    assert errs[2] < 1e-6, errs


def test_lsqr_recovers_through_a_forward_conv(rng):
    """A stride-1 "same" convolution with a dominant centre tap is
    invertible: lsqr on as_linear_operator(forward="conv") recovers x."""
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 1, 1] = 1.0
    w[0, 0] += 0.15 * rng.standard_normal((3, 3))
    A = nd.as_linear_operator(w, (1, 1, 6, 6), forward="conv", padding="same",
                              padding_mode="replicate")
    x_true = rng.standard_normal(A.shape[1])
    errs = _lsqr_errors(A, x_true, A.matvec(x_true), (1, 4, 50))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 1e-6, errs


def test_complex_lsqr(rng):
    w = random_array(rng, (1, 2, 3), np.complex128)
    A = nd.as_linear_operator(w, (2, 1, 6), stride=2)         # conv_transpose
    x_true = random_array(rng, (A.shape[1],), np.complex128)
    errs = _lsqr_errors(A, x_true, A.matvec(x_true), (1, 40))
    assert errs[1] < min(errs[0], 1e-6), errs


def test_bad_forward():
    with pytest.raises(ValueError, match="forward"):
        nd.as_linear_operator(np.ones((1, 1, 3)), (1, 1, 5), forward="deconv")
