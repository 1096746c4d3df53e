"""Fuzzing whole calls of ``conv_transpose`` and ``conv`` (issue 18, part 5).

Hypothesis draws complete calls: rank 1-3, shapes, stride, padding (every
form), output_padding or output_size, dilation, groups, dtype (float32,
float64, complex64, complex128), data_format, batched or not, a bias or
none, a padding mode, an odd memory layout of the input (a view with
negative or non-unit strides, Fortran order, big-endian, read-only), and
now and then one invalid value. An independent predicate, written from the
definition (``tests/reference.py``), says whether the call is valid:

- a valid call must return the reference's result (within a tolerance
  scaled by the dtype's epsilon and the magnitudes summed) in the
  promoted, native dtype; ``conv`` must also satisfy the adjoint identity
  ``<conv(x), y> = <x, conv_transpose(y)>`` (Hermitian for complex data);
- an invalid call must raise a ``ValueError`` or ``TypeError`` (of the
  class the broken argument calls for, naming it), never a Numba error.

Examples: 60 per test, derandomized, by default (CI). For a long campaign
set ``NUMBA_DECONV_FUZZ_EXAMPLES`` (the examples per test, run in random
batches) and optionally ``NUMBA_DECONV_FUZZ_SECONDS`` (a time budget per
test), e.g.::

    NUMBA_DECONV_FUZZ_EXAMPLES=100000 NUMBA_DECONV_FUZZ_SECONDS=600 \\
        python -m pytest tests/test_fuzz.py -x -q -s

Shapes stay tiny, so every call runs on the serial kernels: each dtype
compiles two variants (one per function).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numba_deconv as nd
from reference import (conv_pads, conv_reference, conv_transpose_mode_ref, explicit_pads,
                       to_channels_first, to_channels_last)

DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
MODES = ("zeros", "circular", "reflect", "replicate")

LONG_EXAMPLES = os.environ.get("NUMBA_DECONV_FUZZ_EXAMPLES")
EXAMPLES = int(LONG_EXAMPLES) if LONG_EXAMPLES else 60
SECONDS = float(os.environ.get("NUMBA_DECONV_FUZZ_SECONDS", "inf"))
BATCH = 500  # examples per hypothesis run in a long campaign

#: How many examples each test ran, and how many of them were invalid calls.
COUNTS: dict = {}


# --- drawing calls ----------------------------------------------------------

def _per_dim(draw, values, rank):
    """An int for every dim, or a tuple of one per dim."""
    if draw(st.booleans()):
        return draw(values)
    return tuple(draw(values) for _ in range(rank))


def _tuple(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def _padding(draw, rank, largest):
    kind = draw(st.sampled_from(["int", "ints", "pairs", "valid", "same"]))
    if kind == "int":
        return draw(st.integers(0, largest))
    if kind == "ints":
        return tuple(draw(st.integers(0, largest)) for _ in range(rank))
    if kind == "pairs":
        return tuple((draw(st.integers(0, largest)), draw(st.integers(0, largest)))
                     for _ in range(rank))
    return kind


def _layout(draw, a):
    """``a`` (or an equal array) in an odd memory layout, now and then."""
    kind = draw(st.sampled_from(["plain"] * 6 + ["view", "reversed", "fortran", "big-endian",
                                                  "read-only"]))
    if kind == "view":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if kind == "reversed":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "big-endian":
        return a.astype(a.dtype.newbyteorder(">"))
    if kind == "read-only":
        a = a.copy()
        a.setflags(write=False)
    return a


def _random(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


# One invalid value: (argument, the value or a function of the call, the
# exception class). Applied to a call that is otherwise valid, the error
# must be of that class and name the argument.
MUTATIONS = (
    ("stride", 0, ValueError),
    ("stride", -1, ValueError),
    ("stride", 1.5, TypeError),
    ("stride", "2", TypeError),
    ("stride", "rank+1", ValueError),
    ("dilation", 0, ValueError),
    ("dilation", 2.0, TypeError),
    ("padding", -1, ValueError),
    ("padding", "full", ValueError),
    ("padding", 1.5, TypeError),
    ("groups", 0, ValueError),
    ("groups", 2.0, TypeError),
    ("data_format", "NCHW", ValueError),
    ("padding_mode", "wrap", ValueError),
    ("device", "gpu", ValueError),
    ("bias", "wrong shape", ValueError),
    ("x", "channels", ValueError),
    ("x", "object", TypeError),
    ("output_padding", "too large", ValueError),
    ("output_size", "unreachable", ValueError),
)


@st.composite
def calls(draw, forward):
    """A whole call of ``forward``: ``(x, weight, bias, kwargs, info)``, with
    ``info`` the shapes and arguments in explicit form and the mutation."""
    rank = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    groups = draw(st.integers(1, 3))
    c_in_g, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, 3 if rank < 3 else 2))
    max_i, max_k = {1: (6, 4), 2: (4, 3), 3: (3, 2)}[rank]
    batch = draw(st.sampled_from([None, 0, 1, 1, 2, 2]))  # None: unbatched
    spatial = tuple(draw(st.integers(1, max_i)) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, max_k)) for _ in range(rank))
    stride = _per_dim(draw, st.integers(1, 3), rank)
    dilation = _per_dim(draw, st.integers(1, 3), rank)
    padding = _padding(draw, rank, 2)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    s_t, d_t = _tuple(stride, rank), _tuple(dilation, rank)
    limits = [max(s, d) for s, d in zip(s_t, d_t)]
    if forward == "conv_transpose":
        c_in, c_out = groups * c_in_g, groups * c_out_g
        w_shape = (c_in, c_out_g) + kernel
        size_kind = draw(st.sampled_from(["none", "none", "output_padding", "output_size"]))
        if size_kind == "output_padding" and padding != "same":
            kwargs["output_padding"] = tuple(draw(st.integers(0, lim - 1)) for lim in limits)
        elif size_kind == "output_size":
            base = explicit_pads(spatial, kernel, stride=stride, padding=padding,
                                 dilation=dilation)
            base = [o - op for o, op in zip(base["out_spatial"], base["output_padding"])]
            kwargs["output_size"] = tuple(b + draw(st.integers(0, lim - 1))
                                          for b, lim in zip(base, limits))
    else:
        c_in, c_out = groups * c_in_g, groups * c_out_g
        w_shape = (c_out, c_in_g) + kernel
    kwargs["padding_mode"] = draw(st.sampled_from(MODES[:1] * 5 + MODES[1:]))
    kwargs["data_format"] = draw(st.sampled_from(["channels_first", "channels_last"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = _random(rng, (1 if batch is None else batch, c_in) + spatial, dtype)
    w = _random(rng, w_shape, dtype)
    b = _random(rng, (c_out,), dtype) if draw(st.booleans()) else None
    if kwargs["data_format"] == "channels_last":
        x = np.ascontiguousarray(to_channels_last(x))
    if batch is None:
        x = x[0]
    mutation = None
    base_kwargs = dict(kwargs)
    if draw(st.integers(0, 5)) == 0:
        name, value, exc = draw(st.sampled_from(MUTATIONS))
        if name in ("output_padding", "output_size") and forward == "conv":
            value, exc = 1, TypeError        # not arguments of conv
        elif name == "output_padding":
            kwargs.pop("output_size", None)
            if kwargs["padding"] == "same":
                kwargs["padding"] = 0
            value = tuple(limits)            # one past the largest valid value
        elif name == "output_size":
            kwargs.pop("output_padding", None)
            base = explicit_pads(spatial, kernel, stride=stride, padding=kwargs["padding"],
                                 dilation=dilation)
            base = [o - op for o, op in zip(base["out_spatial"], base["output_padding"])]
            value = tuple(bb + lim for bb, lim in zip(base, limits))  # one past the range
        elif value == "rank+1":
            value = (1,) * (rank + 1)
        base_kwargs = dict(kwargs)           # the call before the mutation
        if name == "bias":
            b = _random(rng, (c_out + 1,), dtype)
        elif name == "x" and value == "channels":
            axis = (-1 if kwargs["data_format"] == "channels_last"
                    else (1 if batch is not None else 0))
            x = np.concatenate([x, x.take([0], axis=axis)], axis=axis)
        elif name == "x":
            x = x.astype(object)
        else:
            kwargs[name] = value
        mutation = (name, value, exc)
    if x.dtype != object:
        x = _layout(draw, x)
    info = dict(rank=rank, dtype=np.dtype(dtype), spatial=spatial, kernel=kernel,
                batch=batch, mutation=mutation, w_shape=w_shape, base_kwargs=base_kwargs)
    return x, w, b, kwargs, info


# --- the oracle -------------------------------------------------------------

def _eps(dtype):
    return float(np.finfo(np.dtype(dtype)).eps)


def _batched_cf(a, info, data_format):
    a = np.asarray(a)
    if info["batch"] is None:
        a = a[None]
    return to_channels_first(a) if data_format == "channels_last" else a


def _from_cf(y, info, data_format):
    if data_format == "channels_last":
        y = to_channels_last(y)
    return y[0] if info["batch"] is None else y


def _transposed_expectation(x, w, b, kwargs, info):
    """``(valid, expected, (bound, n_terms))`` of a conv_transpose call, from
    the definition: the explicit pads, the output size and the mode's limits."""
    if not _valid("conv_transpose", kwargs, info):
        return False, None, None
    fmt = kwargs["data_format"]
    p = explicit_pads(info["spatial"], info["kernel"], stride=kwargs["stride"],
                      padding=kwargs["padding"], dilation=kwargs["dilation"],
                      output_padding=kwargs.get("output_padding", 0),
                      output_size=kwargs.get("output_size"))
    mode = kwargs["padding_mode"]
    args = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
                pad_after=p["pad_after"], output_padding=p["output_padding"],
                groups=kwargs["groups"], padding_mode=mode)
    xc = _batched_cf(x, info, fmt)
    empty = xc.shape[0] == 0  # (the reference's fold cannot reshape an empty batch)
    if empty:
        xc = np.zeros((1,) + xc.shape[1:], xc.dtype)
    expected = conv_transpose_mode_ref(xc, w, b, **args)
    bound = conv_transpose_mode_ref(np.abs(xc), np.abs(w), None if b is None else np.abs(b),
                                    dtype=np.float64, **args)
    if empty:
        expected, bound = expected[:0], bound[:0]
    folds = 1 if mode == "zeros" else int(np.prod([1 + pb + pa for pb, pa in zip(
        p["pad_before"], p["pad_after"])]))
    n_terms = (w.shape[0] // kwargs["groups"]) * int(np.prod(w.shape[2:])) * folds + 1
    return True, _from_cf(expected, info, fmt), (_from_cf(bound, info, fmt), n_terms)


def _conv_expectation(x, w, b, kwargs, info):
    if not _valid("conv", kwargs, info):
        return False, None, None
    expected = conv_reference(x, w, b, **kwargs)
    bound = conv_reference(np.abs(np.asarray(x)), np.abs(w), None if b is None else np.abs(b),
                           dtype=np.float64, **kwargs)
    n_terms = w.shape[1] * int(np.prod(w.shape[2:])) + 1
    return True, expected, (bound, n_terms)


def _assert_close(actual, expected, bound, n_terms, dtype):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.size == 0:
        return
    factor = 8.0 if np.dtype(dtype).kind == "c" else 4.0
    tol = factor * n_terms * _eps(dtype) * bound + np.finfo(np.float64).tiny
    err = np.abs(actual.astype(expected.dtype) - expected)
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{bad.sum()} of {bad.size} outputs differ; first at {idx}: "
                             f"got {actual[idx]!r}, expected {expected[idx]!r}, "
                             f"tolerance {tol[idx]:.3g}")


def _check(forward, call):
    x, w, b, kwargs, info = call
    COUNTS.setdefault(forward, [0, 0])[0] += 1
    func = getattr(nd, forward)
    mutation = info["mutation"]
    if mutation is not None:
        COUNTS[forward][1] += 1
        name, _, exc = mutation
        # Valid apart from the mutation? Then the error must be the
        # mutation's, naming its argument; else any clean error will do.
        clean = _base_valid(forward, call)
        with pytest.raises((ValueError, TypeError)) as caught:
            func(x, w, b, **kwargs)
        err = caught.value
        assert not type(err).__module__.startswith("numba"), f"a Numba error: {err!r}"
        if clean:
            assert isinstance(err, exc), f"{mutation}: {type(err).__name__}: {err}"
            assert name in str(err), f"{mutation}: the message does not name it: {err}"
        return
    expect = _transposed_expectation if forward == "conv_transpose" else _conv_expectation
    valid, expected, bound = expect(x, w, b, kwargs, info)
    if not valid:
        COUNTS[forward][1] += 1
        with pytest.raises((ValueError, TypeError)) as caught:
            func(x, w, b, **kwargs)
        assert not type(caught.value).__module__.startswith("numba"), caught.value
        return
    y = func(x, w, b, **kwargs)
    dtype = info["dtype"]
    assert isinstance(y, np.ndarray)
    assert y.dtype == dtype and y.dtype.isnative, (y.dtype, dtype)
    _assert_close(y, expected, bound[0], bound[1], dtype)
    if forward == "conv" and b is None and y.size:
        _check_adjoint(x, w, y, kwargs, info)


def _base_valid(forward, call):
    """Whether the call was valid before its mutation."""
    info = call[4]
    return _valid(forward, info["base_kwargs"], info)


def _valid(forward, kwargs, info):
    """The oracle's verdict on the geometry alone."""
    if forward == "conv_transpose":
        p = explicit_pads(info["spatial"], info["kernel"], stride=kwargs["stride"],
                          padding=kwargs["padding"], dilation=kwargs["dilation"],
                          output_padding=kwargs.get("output_padding", 0),
                          output_size=kwargs.get("output_size"))
        limits = [max(s, d) for s, d in zip(p["stride"], p["dilation"])]
        sizes = p["out_spatial"]
        if min(sizes) < 1 or not all(0 <= op < lim
                                     for op, lim in zip(p["output_padding"], limits)):
            return False
        if kwargs["padding"] == "same" and any(_tuple(kwargs.get("output_padding", 0),
                                                      info["rank"])):
            return False
    else:
        p = conv_pads(info["spatial"], info["kernel"], stride=kwargs["stride"],
                      padding=kwargs["padding"], dilation=kwargs["dilation"])
        if min(p["out_spatial"]) < 1:
            return False
        sizes = info["spatial"]
    mode = kwargs.get("padding_mode", "zeros")
    return all(not ((mode == "reflect" and max(pb, pa) > o - 1)
                    or (mode == "circular" and max(pb, pa) > o))
               for o, pb, pa in zip(sizes, p["pad_before"], p["pad_after"]))


def _check_adjoint(x, w, y, kwargs, info):
    """``<conv(x), v> = <x, conv_transpose(v, conj(w))>`` with the same
    stride, padding (as explicit pairs), dilation, groups and mode, and
    ``output_size`` = x's spatial size."""
    p = conv_pads(info["spatial"], info["kernel"], stride=kwargs["stride"],
                  padding=kwargs["padding"], dilation=kwargs["dilation"])
    rng = np.random.default_rng(0)
    v = _random(rng, y.shape, info["dtype"])
    xt = nd.conv_transpose(v, w.conj(), stride=kwargs["stride"],
                           padding=tuple(zip(p["pad_before"], p["pad_after"])),
                           dilation=kwargs["dilation"], groups=kwargs["groups"],
                           output_size=info["spatial"], padding_mode=kwargs["padding_mode"],
                           data_format=kwargs["data_format"])
    assert xt.shape == np.shape(x), (xt.shape, np.shape(x))
    x = np.asarray(x)
    lhs, rhs = np.vdot(v, y), np.vdot(xt, x)
    scale = np.vdot(np.abs(v), conv_reference(np.abs(x), np.abs(w), dtype=np.float64,
                                              **kwargs)).real
    n_terms = w.shape[1] * int(np.prod(w.shape[2:])) * 2 ** info["rank"] + y.size + x.size
    tol = 8 * n_terms * _eps(info["dtype"]) * scale + 1e-300
    assert abs(lhs - rhs) <= tol, (lhs, rhs, tol)


# --- the tests --------------------------------------------------------------

def _settings(examples, ci):
    return settings(max_examples=examples, deadline=None, derandomize=ci, database=None,
                    suppress_health_check=list(HealthCheck))


def _run(forward, examples, ci):
    """One hypothesis run of ``examples`` calls of ``forward``."""

    def body(call):
        _check(forward, call)

    _settings(examples, ci)(given(calls(forward))(body))()


def _campaign(forward):
    """Run ``forward``'s fuzz test: a fixed CI run, or a long campaign in
    random batches until the examples or the seconds run out."""
    if not LONG_EXAMPLES:
        _run(forward, EXAMPLES, ci=True)
        return
    start = time.monotonic()
    runs = 0
    while (COUNTS.get(forward, [0])[0] < EXAMPLES
           and time.monotonic() - start < SECONDS):
        _run(forward, min(BATCH, EXAMPLES - COUNTS.get(forward, [0])[0]), ci=False)
        runs += 1
    done, invalid = COUNTS.get(forward, [0, 0])
    print(f"\n{forward}: {done} examples ({invalid} invalid calls) in {runs} runs, "
          f"{time.monotonic() - start:.0f} s", flush=True)


def test_fuzz_conv_transpose():
    _campaign("conv_transpose")
    assert COUNTS["conv_transpose"][0] > 0


def test_fuzz_conv():
    _campaign("conv")
    assert COUNTS["conv"][0] > 0
