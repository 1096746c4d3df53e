"""Comparison helpers shared by the test modules (no numba_deconv import).

The tolerance of a comparison is derived from the dtype the library computes
in and from :func:`reference.magnitude_bound`: summing ``n`` products in any
order in a precision with unit round-off ``eps`` is off by at most about
``n * eps * sum(|terms|)``, so cancellation cannot make a correct result
fail and a wrong tap (an error of the size of one term) cannot pass.
"""

from __future__ import annotations

import inspect

import numpy as np

from reference import magnitude_bound, reference

#: Dtypes the library computes in natively.
NATIVE_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


def compute_dtype(*arrays):
    """The dtype the contract says the result has for these inputs.

    numpy.result_type of the inputs; integers and bool -> float64; float16
    -> float32; byte order native.
    """
    dt = np.result_type(*[np.asarray(a) for a in arrays if a is not None])
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    elif dt == np.float16:
        dt = np.dtype(np.float32)
    return dt.newbyteorder("=")


def _eps(dtype):
    return float(np.finfo(np.dtype(dtype)).eps)


def assert_matches_reference(actual, x, weight, bias=None, *, dtype=None,
                             exact_dtype=True, **kwargs):
    """Check ``actual`` against the oracle for these arguments.

    ``kwargs`` are conv_transpose's keyword arguments (stride, padding,
    output_padding, dilation, groups, output_size, data_format). ``dtype``
    is the expected result dtype (default :func:`compute_dtype`).
    """
    expected_dtype = compute_dtype(x, weight, bias) if dtype is None else np.dtype(dtype)
    expected = reference(x, weight, bias, **kwargs)
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if exact_dtype:
        assert actual.dtype == expected_dtype, (actual.dtype, expected_dtype)
    if actual.size == 0:
        return
    bound = magnitude_bound(x, weight, bias, **kwargs)
    w = np.asarray(weight)
    groups = kwargs.get("groups", 1)
    n_terms = (w.shape[0] // groups) * int(np.prod(w.shape[2:])) + 1
    # Complex products add a few roundings each; float16 inputs are exact in
    # float32, so eps of the compute dtype is the right unit throughout.
    factor = 8.0 if np.dtype(expected_dtype).kind == "c" else 4.0
    tol = factor * n_terms * _eps(expected_dtype) * bound + np.finfo(np.float64).tiny
    err = np.abs(actual.astype(expected.dtype) - expected)
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{bad.sum()} of {bad.size} outputs differ from the reference; "
            f"first at {idx}: got {actual[idx]!r}, expected {expected[idx]!r} "
            f"(tolerance {tol[idx]:.3g})")


def assert_same_nonfinite(actual, expected):
    """NaN exactly where expected has NaN, +-Inf exactly where it has them,
    finite values close. For NaN/Inf propagation tests."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    for part in ((lambda a: a.real, lambda a: a.imag)
                 if np.iscomplexobj(expected) else (lambda a: a,)):
        a, e = part(actual), part(expected)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e),
                                      err_msg="NaN positions differ")
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(e),
                                      err_msg="+Inf positions differ")
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(e),
                                      err_msg="-Inf positions differ")
        # Per part: numpy compares complex Infs as whole complex numbers.
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5, equal_nan=True)


def random_array(rng, shape, dtype=np.float64):
    """Standard-normal values of ``dtype`` (complex: both parts random;
    integers: small values; bool: random bits)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -4
        return rng.integers(lo, 5, size=shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape)
                + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def launches_of(monkeypatch, kernel):
    """The list of the arguments of each launch of the CPU task kernel
    ``kernel`` (through ``cpu.driver.parallel``), from now on."""
    from numba_deconv.cpu import driver

    launches = []
    real = driver.parallel

    def spy(launched, *args, **kwargs):
        if launched is kernel:
            launches.append(args)
        return real(launched, *args, **kwargs)
    monkeypatch.setattr(driver, "parallel", spy)
    return launches


def named_arguments(kernel, args):
    """The arguments ``args`` of a launch of ``kernel`` (from
    :func:`launches_of`) by the names of its parameters."""
    return inspect.signature(kernel.py_func).bind_partial(*args).arguments


def returns_of(monkeypatch, owner, name):
    """The list of what ``owner.name`` returns, call by call, from now on
    (it still runs and returns as before)."""
    returned = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        returned.append(real(*args, **kwargs))
        return returned[-1]
    monkeypatch.setattr(owner, name, spy)
    return returned
