"""The baseline kernel stands in for a tuned kernel while it compiles.

Two promises are tested: the baseline gives every bit of the tuned
kernel's result (so a switch mid-process changes nothing), and the
background compile really happens: a cold process computes with the
baseline at once, a helper process fills the on-disk cache, and the tuned
kernel takes over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_deconv as nd
from numba_deconv import _compiled, _dispatch, config, conv_transpose
from numba_deconv.cpu import tiering, transpose

from helpers import random_array, returns_of
from reference import reference
from test_conv import assert_conv_matches_oracle
from test_conv_kernels import CONV_CASES
from test_real_views import CASES as VIEWS_CASES, _on_views
from test_strategies import CASES

# Special values the orders must agree on: NaN and Inf, signed zeros, and
# subnormals whose products round to -0.0 (the one case where the tiles'
# multiply-adds of zero padding change a bit, which the baseline copies).
SPECIALS = {np.float32: [np.nan, np.inf, -np.inf, -0.0, 1e-40, -1e-40],
            np.float64: [np.nan, np.inf, -np.inf, -0.0, 1e-310, -1e-310]}
SPECIALS[np.complex64], SPECIALS[np.complex128] = SPECIALS[np.float32], SPECIALS[np.float64]


class _Compiling:
    """A helper process that never finishes."""

    def poll(self):
        return None

    def wait(self, timeout=None):
        return None


# Routes made under each test's settings (conftest's fixture), none left behind.
pytestmark = pytest.mark.usefixtures("fresh_routes")


def _force(monkeypatch, kernel):
    fallback = "rows" if kernel in ("planes", "phase_tiles") else kernel
    strategy = "columns" if kernel in _dispatch.STRATEGIES["columns"] else "gather"
    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: (strategy, kernel, fallback))


def _as_if_cold(monkeypatch):
    """Every tuned kernel looks uncompiled and off disk, and its compile
    never ends: each call runs the baseline (from call shapes planned anew,
    as in a new process)."""
    _dispatch.reset()
    monkeypatch.setattr(config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(_compiled, "_COMPILED", {})
    monkeypatch.setattr(tiering, "on_disk", lambda *args: False)
    monkeypatch.setattr(tiering, "cache_writable", lambda *args: True)
    monkeypatch.setattr(tiering, "_helpers", {})
    monkeypatch.setattr(tiering, "_start_helper", lambda *args: _Compiling())
    monkeypatch.setattr(transpose, "_READY", set())


def _sprinkle(rng, array, values):
    flat = array.reshape(-1)
    at = rng.choice(flat.size, size=min(len(values), flat.size), replace=False)
    flat[at] = values[:len(at)]


# The row and plane kernels take complex data too (the others run it as
# its real twin).
# "phase_tiles:registers": the tiles' baseline in its form for big calls.
KERNEL_DTYPES = [(kernel, dtype) for kernel in ("rows_serial", "rows", "planes")
                 for dtype in (np.float32, np.float64, np.complex64, np.complex128)] + [
    (kernel, dtype) for kernel in ("phase_tiles", "phase_tiles:registers", "tap_rows",
                                   "column_tiles")
    for dtype in (np.float32, np.float64)]


@pytest.mark.parametrize("kernel, dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_the_baseline_gives_the_tuned_kernels_bits(kernel, dtype, x_shape, w_shape, kwargs,
                                                   monkeypatch, ran, rng):
    kernel, _, form = kernel.partition(":")
    _force(monkeypatch, kernel)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    _sprinkle(rng, x, SPECIALS[dtype])
    tuned = conv_transpose(x, w, b, **kwargs)
    assert ran and all(name == kernel for name, _ in ran)
    ran.clear()
    _as_if_cold(monkeypatch)
    if form == "registers":
        monkeypatch.setattr(config, "BASELINE_REGISTERS_MIN_MULTIPLY_ADDS", 0)
    stood_in = conv_transpose(x, w, b, **kwargs)
    baseline = {"phase_tiles": "baseline_tiles_" + form if form else "baseline_tiles",
                "tap_rows": "baseline_columns",
                "column_tiles": "baseline_columns"}.get(kernel, "baseline")
    assert ran == [] and any(v["kernel"] == baseline for v in _compiled.cache_info())
    assert stood_in.tobytes() == tuned.tobytes(), np.nanmax(abs(stood_in - tuned))
    np.testing.assert_allclose(stood_in, reference(x, w, b, **kwargs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("registers", [False, True])
@pytest.mark.parametrize("dtype, tiny, weight", [(np.float32, -1e-40, 1e-10),
                                                  (np.float64, -1e-310, 1e-20)])
def test_the_tiles_order_keeps_the_signed_zeros_of_the_padding(dtype, tiny, weight, registers,
                                                               monkeypatch, ran):
    """Every product rounds to -0.0, and a tap that reads the zero padding
    (along H as well as W) adds fma(0, w, acc), which turns -0.0 into 0.0:
    whether an output is -0.0 (a bias of -0.0 keeps the sign) depends on
    whether its last term read the input or the padding, so on the order of
    every tap, those in the padding included."""
    _force(monkeypatch, "phase_tiles")
    x = np.full((2, 3, 5, 4), tiny, dtype)
    w = np.full((3, 2, 3, 3), weight, dtype)
    b = np.full(2, -0.0, dtype)
    tuned = conv_transpose(x, w, b, stride=2)
    assert ran == [("phase_tiles", True)]
    assert not tuned.any() and 0 < np.signbit(tuned).sum() < tuned.size
    _as_if_cold(monkeypatch)
    monkeypatch.setattr(config, "BASELINE_REGISTERS_MIN_MULTIPLY_ADDS", 0 if registers else 1 << 62)
    assert conv_transpose(x, w, b, stride=2).tobytes() == tuned.tobytes()
    assert [v["kernel"] for v in _compiled.cache_info()] == [
        "baseline_tiles_registers" if registers else "baseline_tiles"]


# The real cases in both real dtypes, and the tiles' cases in complex64:
# the tiles read a complex call's parts in place as its real twin, the
# baseline the twin's channels split from them.
CONV_DTYPES = [(case, dtype) for case in CONV_CASES if np.dtype(case[7]).kind == "f"
               for dtype in (np.float32, np.float64)] + [
    (case, np.complex64) for case in CONV_CASES if case[8] == "conv_tiles"]


@pytest.mark.parametrize("case, dtype", CONV_DTYPES,
                         ids=[f"{c[0]}-{np.dtype(d).name}" for c, d in CONV_DTYPES])
def test_the_conv_baseline_gives_the_conv_kernels_bits(case, dtype, monkeypatch, ran, rng):
    """``conv``'s kernels multiply the zero padding: an infinite weight
    gives NaN at the outputs whose taps reach it, and so must the
    baseline."""
    _, x_shape, w_shape, stride, padding, dilation, groups, _, kernel = case
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[0],), dtype)
    _sprinkle(rng, x, SPECIALS[dtype])
    _sprinkle(rng, w, SPECIALS[dtype][1:])
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tuned = nd.conv(x, w, b, **kwargs)
    assert ran and all(name == kernel for name, _ in ran)
    ran.clear()
    _as_if_cold(monkeypatch)
    stood_in = nd.conv(x, w, b, **kwargs)
    assert ran == [] and [v["kernel"] for v in _compiled.cache_info()] == ["baseline_conv"]
    assert stood_in.tobytes() == tuned.tobytes()


COMPLEX_CONV_CASES = [case for case in CONV_CASES if np.dtype(case[7]).kind == "c"]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("case", COMPLEX_CONV_CASES, ids=[c[0] for c in COMPLEX_CONV_CASES])
def test_the_conv_baseline_gives_the_complex_plane_kernels_bits(case, dtype, monkeypatch, ran,
                                                                rng):
    """Complex ``conv`` with few channel pairs runs its plane kernels on
    the complex data, ``acc += w * x`` element by element, the zero
    padding included (an infinite weight there gives NaN), and so does
    the baseline: infinities, signed zeros, subnormals and overflowing
    products in either part of ``x`` and the bias, signed zeros and
    subnormals in ``w`` (every output reads every weight of its channel,
    the padding included: an infinite one would leave no finite output to
    compare; a NaN compiles in place, see below)."""
    _, x_shape, w_shape, stride, padding, dilation, groups, _, kernel = case
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[0],), dtype)
    for array in (x.real, x.imag):
        _sprinkle(rng, array, NO_NAN[dtype])
    for array in (w.real, w.imag):
        _sprinkle(rng, array, NO_NAN[dtype][2:5])
    _sprinkle(rng, b.real, [-0.0, np.inf])
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tuned = nd.conv(x, w, b, **kwargs)
    assert ran and all(name == kernel for name, _ in ran)
    ran.clear()
    _as_if_cold(monkeypatch)
    stood_in = nd.conv(x, w, b, **kwargs)
    assert ran == [] and [v["kernel"] for v in _compiled.cache_info()] == ["baseline_conv"]
    assert stood_in.tobytes() == tuned.tobytes()


@pytest.mark.parametrize("dtype, tiny, weight", [(np.float32, -1e-40, 1e-10),
                                                  (np.float64, -1e-310, 1e-20)])
def test_the_conv_order_keeps_the_signed_zeros_of_the_padding(dtype, tiny, weight, monkeypatch,
                                                              ran):
    """As for the tiles' order: every product rounds to -0.0, a tap in the
    zero padding (along D, H or W) turns the sum into 0.0, so each output's
    sign says whether its last tap read the padding."""
    x = np.full((2, 8, 4, 5, 5), tiny, dtype)
    w = np.full((9, 8, 2, 3, 3), weight, dtype)
    b = np.full(9, -0.0, dtype)
    tuned = nd.conv(x, w, b, stride=2, padding=1)
    assert ran == [("conv_tiles", True)]
    assert not tuned.any() and 0 < np.signbit(tuned).sum() < tuned.size
    _as_if_cold(monkeypatch)
    assert nd.conv(x, w, b, stride=2, padding=1).tobytes() == tuned.tobytes()


@pytest.mark.parametrize("forward", ["conv", "conv_transpose"])
def test_a_plan_keeps_the_conv_weights_once_the_tiles_load(forward, monkeypatch, ran, rng):
    """On a cold cache a plan is made without compiling the ``conv`` tiles,
    computes with the baseline while a helper compiles them, and then lays
    out their weights once and keeps them."""
    _as_if_cold(monkeypatch)
    helper = _Helper()
    monkeypatch.setattr(tiering, "_start_helper", lambda *args: helper)
    w = random_array(rng, (16, 8, 3, 3), np.float32)
    conv_shape = (2, 8, 9, 11)  # conv's input; conv_transpose's output of (2, 16, 4, 5)
    p = nd.plan(w, (2, 16, 4, 5) if forward == "conv_transpose" else conv_shape, np.float32,
                forward=forward, stride=2)
    assert "conv_tiles" not in {v["kernel"] for v in _compiled.cache_info()}
    y = random_array(rng, conv_shape, np.float32)
    use = p if forward == "conv" else p.adjoint
    first = use(y)
    assert ran == [] and p._conv_laid_out is None
    helper.done = True  # the tiles in the on-disk cache
    monkeypatch.setattr(tiering, "on_disk", lambda *args: True)
    assert use(y).tobytes() == first.tobytes()
    assert ran == [("conv_tiles", True)] and p._conv_laid_out.ndim == 2
    kept = p._conv_laid_out
    assert use(y).tobytes() == first.tobytes() and p._conv_laid_out is kept
    assert_conv_matches_oracle(first, y, w, stride=2)


# x shape, conv's output channels, kernel, arguments: the channels of the
# gradient's first operand (grad_output for conv's, x for conv_transpose's)
# take the channel tiles from a vector per group, else the dot tiles.
WEIGHT_GRAD_CASES = [
    ((3, 20, 13, 11), 24, (3, 3), dict(stride=2, padding=1)),
    ((2, 6, 30), 4, (5,), dict(stride=2, padding=2)),
    ((2, 8, 7, 6, 9), 6, (3, 2, 3), dict(stride=(2, 1, 3), padding=1, dilation=(1, 2, 1),
                                         groups=2)),
    ((4, 16, 9, 9), 32, (3, 3), dict(padding=1, groups=2)),
]


@pytest.mark.parametrize("block_bytes", [1 << 20, 2000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["conv_weight_grad", "conv_transpose_weight_grad"])
@pytest.mark.parametrize("x_shape, c_out, kernel, kwargs", WEIGHT_GRAD_CASES)
def test_the_weight_grad_baseline_gives_the_kernels_bits(x_shape, c_out, kernel, kwargs, op,
                                                         dtype, block_bytes, monkeypatch, rng):
    """Both orders (the channel tiles sum each element over every image in
    one chain; the dot tiles in lanes, one tree per block of images, which
    2000 bytes makes several), with NaN, infinities, signed zeros and
    subnormals in the operand that may hold them; the sums run over the
    grid's scratch positions too, where ``fma(0, src, acc)`` can turn a
    ``-0.0`` into ``0.0``."""
    monkeypatch.setattr(config, "WEIGHT_GRAD_BLOCK_BYTES", block_bytes)
    x = random_array(rng, x_shape, dtype)
    w = np.ones((c_out, x_shape[1] // kwargs.get("groups", 1)) + kernel, dtype)
    gy = random_array(rng, nd.conv(x, w, **kwargs).shape, dtype)
    if op == "conv_transpose_weight_grad":  # (its x, its grad_output), conv's output size
        x = random_array(rng, nd.conv_transpose(gy, w, **kwargs).shape, dtype)
    _sprinkle(rng, gy, SPECIALS[dtype])
    _sprinkle(rng, x, [-0.0, -0.0])
    args = (x, gy) if op == "conv_weight_grad" else (gy, x)
    tuned = getattr(nd, op)(*args, kernel, **kwargs)
    _as_if_cold(monkeypatch)
    stood_in = getattr(nd, op)(*args, kernel, **kwargs)
    assert [v["kernel"] for v in _compiled.cache_info()] == ["baseline_weight_grad"]
    assert stood_in.tobytes() == tuned.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["planes", "phase_tiles"])
def test_weights_the_tiles_refuse_take_the_rows_order(kernel, dtype, monkeypatch, ran, rng):
    """An infinite weight: the tiles and planes hand over to the row
    kernel, and so does the baseline, in the row kernel's order."""
    _force(monkeypatch, kernel)
    x = random_array(rng, (2, 8, 5, 6), dtype)
    w = random_array(rng, (8, 4, 3, 3), dtype)
    w[1, 2, 0, 1] = np.inf
    tuned = conv_transpose(x, w, stride=2, padding=1)
    assert ran == [(kernel, False), ("rows", True)]
    _as_if_cold(monkeypatch)
    assert conv_transpose(x, w, stride=2, padding=1).tobytes() == tuned.tobytes()


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("kernel, channels_last", [("column_tiles", False),
                                                   ("column_tiles", True), ("tap_rows", False)])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", VIEWS_CASES)
def test_the_views_baseline_gives_the_complex_kernels_bits(x_shape, w_shape, kwargs, kernel,
                                                           channels_last, dtype, monkeypatch,
                                                           rng):
    """A complex call on the real views of its arrays (the columns kernel,
    channels first and last, and the tap rows): the baseline in their
    order, with infinities, signed zeros, subnormals and overflowing
    products in either part of the input and the weights, and in the
    bias (a NaN compiles in place: the next test)."""
    ran, _ = _on_views(monkeypatch, kernel)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    for array in (x.real, x.imag, w.real, w.imag):
        _sprinkle(rng, array, NO_NAN[dtype])
    _sprinkle(rng, b.imag, [np.inf, -0.0])
    data_format = "channels_last" if channels_last else "channels_first"
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    tuned = conv_transpose(x, w, b, data_format=data_format, **kwargs)
    assert ran == [True]
    _as_if_cold(monkeypatch)
    stood_in = conv_transpose(x, w, b, data_format=data_format, **kwargs)
    assert ran == [True, True]
    assert [v["kernel"] for v in _compiled.cache_info()] == ["baseline_views"]
    assert stood_in.tobytes() == tuned.tobytes()


# What NumPy's fold of BLAS's columns must agree on: every special value
# but NaN (inputs with NaN compile the fold in place), and values whose
# products overflow, so that sums of infinities of both signs make NaN.
NO_NAN = {dtype: [v for v in values if not np.isnan(v)] + [3e38, -3e38]
          for dtype, values in SPECIALS.items()}


def _cold_blas(monkeypatch):
    """As if cold (:func:`_as_if_cold`), where the compiled fold must not
    run: the columns' folds by NumPy, call by call."""
    from numba_deconv.cpu import _blas

    _as_if_cold(monkeypatch)
    folds = []
    for name in ("col2im", "col2im_last"):
        monkeypatch.setattr(_blas, name, lambda *args: pytest.fail("the compiled fold ran"))
        by_numpy = getattr(_blas, name + "_by_numpy")
        monkeypatch.setattr(_blas, name + "_by_numpy",
                            lambda *args, fold=by_numpy: folds.append(fold(*args)))
    return folds


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("workspace", [1 << 20, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_numpy_folds_the_blas_columns_to_the_bit(x_shape, w_shape, kwargs, dtype, workspace,
                                                 channels_last, monkeypatch, rng):
    """While ``col2im`` compiles, the BLAS route computes its products as
    ever and NumPy folds them, the same adds in the same order: the same
    bits, with whole images a task or (a workspace of 64 bytes) slabs and
    blocks of channels, channels first and (folded where the data lie)
    channels last."""
    _force(monkeypatch, "blas")
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    monkeypatch.setattr(config, "GEMM_MIN_ROWS", 2)
    monkeypatch.setattr(config, "BLAS_LAST_MIN_BLOCK_BYTES", 0)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    _sprinkle(rng, x, NO_NAN[dtype])
    _sprinkle(rng, b, [-0.0, np.inf])
    data_format = "channels_last" if channels_last else "channels_first"
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    tuned = conv_transpose(x, w, b, data_format=data_format, **kwargs)
    folds = _cold_blas(monkeypatch)
    stood_in = conv_transpose(x, w, b, data_format=data_format, **kwargs)
    assert folds and _compiled.cache_info() == []
    assert stood_in.tobytes() == tuned.tobytes()


@st.composite
def _fold_calls(draw):
    """A block of GEMM columns and a geometry for :func:`.kernels.col2im`:
    rank 3, kernels 1-4 (now and then as wide as the stride along W: the
    rows one (kd, kh) reaches go out without a zero start), strides 1-3,
    dilations 1-2, any padding within the kernel's span, output sizes up
    to a stride past the least, values with infinities, overflowing
    products, signed zeros and subnormals (no NaN: :func:`_cold_blas`)."""
    dtype = draw(st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]))
    kernel, stride, dilation = ([draw(st.integers(1, high)) for _ in range(3)]
                                for high in (4, 3, 2))
    if draw(st.booleans()):
        stride[2], dilation[2] = kernel[2], 1
    in_sizes = [draw(st.integers(1, 5)) for _ in range(3)]
    pad = [draw(st.integers(0, (k - 1) * d)) for k, d in zip(kernel, dilation)]
    out_sizes = [(i - 1) * s - p + (k - 1) * d + 1 + draw(st.integers(0, s - 1))
                 for i, s, p, k, d in zip(in_sizes, stride, pad, kernel, dilation)]
    if min(out_sizes) < 1:
        out_sizes = [max(o, 1) for o in out_sizes]
    channels = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols = random_array(rng, (channels, *kernel, *in_sizes), dtype)
    bias = random_array(rng, (channels + 1,), dtype)
    if draw(st.booleans()):
        _sprinkle(rng, cols.reshape(-1).view(np.empty(0, dtype).real.dtype), NO_NAN[dtype])
    if draw(st.booleans()):  # every column -0.0 or 0.0, the bias -0.0
        cols[...] = -0.0 * rng.integers(0, 2, cols.shape)
        bias[...] = -0.0
    return cols, bias, tuple(stride), tuple(dilation), tuple(pad), tuple(out_sizes)


@settings(max_examples=80, derandomize=True, deadline=None)
@given(_fold_calls())
def test_numpy_fold_is_col2im_to_the_bit(call):
    """NumPy's folds and the compiled ``col2im`` and ``col2im_last``, called
    directly on the same columns, give the same bits, both layouts."""
    from numba_deconv.cpu import _blas, kernels

    cols, bias, stride, dilation, pad, out_sizes = call
    channels, kernel, in_sizes = cols.shape[0], cols.shape[1:4], cols.shape[4:]
    arguments = (1, 0, 0, out_sizes[0], out_sizes[1])  # channels from 1, all of D and H
    folded, by_numpy = (np.full((channels + 1, *out_sizes), 7, cols.dtype) for _ in "ab")
    kernels.col2im(cols, bias, folded, *arguments, stride, dilation, pad)
    _blas.col2im_by_numpy(cols, bias, by_numpy, *arguments, stride, dilation, pad)
    assert by_numpy.tobytes() == folded.tobytes()
    last = np.ascontiguousarray(np.moveaxis(cols.reshape(channels, -1, *in_sizes), (0, 1),
                                            (-1, -2)))
    folded, by_numpy = (np.full((*out_sizes, channels + 1), 7, cols.dtype) for _ in "ab")
    kernels.col2im_last(last, bias, folded, *arguments, kernel, stride, dilation, pad)
    _blas.col2im_last_by_numpy(last, bias, by_numpy, *arguments, kernel, stride, dilation, pad)
    assert by_numpy.tobytes() == folded.tobytes()


@pytest.mark.parametrize("dtype, tiny", [(np.float32, -1e-30), (np.float64, -1e-200)])
def test_numpy_folds_keep_the_signed_zeros_of_rows_one_tap_reaches(dtype, tiny, monkeypatch):
    """A kernel as wide as the stride: ``col2im`` writes a row that one
    (kd, kh) reaches as its columns plus the bias, with no zero to start
    from, so products of -0.0 and a bias of -0.0 stay -0.0 there (and turn
    0.0 in rows that two taps reach); so must NumPy's fold."""
    _force(monkeypatch, "blas")
    x = np.full((1, 2, 4, 5), tiny, dtype)
    w = np.full((2, 2, 3, 2), -tiny, dtype)
    b = np.full(2, -0.0, dtype)
    tuned = conv_transpose(x, w, b, stride=2)
    assert not tuned.any() and 0 < np.signbit(tuned).sum() < tuned.size
    folds = _cold_blas(monkeypatch)
    assert conv_transpose(x, w, b, stride=2).tobytes() == tuned.tobytes() and folds


@pytest.mark.parametrize("at", ["x", "w", "bias"])
@pytest.mark.parametrize("kernel", ["column_tiles", "tap_rows"])
def test_complex_views_with_nan_compile_in_place(kernel, at, monkeypatch, rng):
    """The views' folds add in scalars, the baseline in vectors, and which
    of two NaNs an add returns is the compiler's choice: with a NaN in
    either part of any input, the kernel compiles in place and runs."""
    ran, _ = _on_views(monkeypatch, kernel)
    x_shape, w_shape, kwargs = VIEWS_CASES[0]
    arrays = {"x": random_array(rng, x_shape, np.complex64),
              "w": random_array(rng, w_shape, np.complex64),
              "bias": random_array(rng, (w_shape[1],), np.complex64)}
    arrays[at].imag.flat[1] = np.nan
    _as_if_cold(monkeypatch)
    started = []
    monkeypatch.setattr(tiering, "_start_helper", lambda *args: started.append(args))
    conv_transpose(arrays["x"], arrays["w"], arrays["bias"], **kwargs)
    assert ran == [True] and not started
    assert [v["kernel"] for v in _compiled.cache_info()] == [kernel]


@pytest.mark.parametrize("at", ["x", "w", "bias"])
def test_inputs_with_nan_compile_the_blas_fold_in_place(at, monkeypatch, ran, rng):
    """Which of two NaNs an add returns is the instructions' choice, which
    NumPy and LLVM make each their own way: with a NaN in any input, the
    fold compiles in place (no helper) and the tuned kernel runs."""
    from numba_deconv.cpu import _blas

    _force(monkeypatch, "blas")
    arrays = {"x": random_array(rng, (2, 6, 5, 4), np.float32),
              "w": random_array(rng, (6, 3, 3, 3), np.float32),
              "bias": random_array(rng, (3,), np.float32)}
    arrays[at].reshape(-1)[1] = np.nan
    _as_if_cold(monkeypatch)
    started = []
    monkeypatch.setattr(tiering, "_start_helper", lambda *args: started.append(args))
    folds = returns_of(monkeypatch, _blas, "col2im_by_numpy")
    conv_transpose(arrays["x"], arrays["w"], arrays["bias"], stride=2)
    assert ran == [("blas", True)] and not folds and not started
    assert [v["kernel"] for v in _compiled.cache_info()] == ["blas"]


def test_no_helper_where_python_is_embedded(monkeypatch, ran, rng):
    """An application that embeds Python has itself as sys.executable: it
    must not be started as a helper, so the kernel compiles in place."""
    _as_if_cold(monkeypatch)
    monkeypatch.setattr(tiering.sys, "executable", "/opt/blender/blender")
    started = []
    monkeypatch.setattr(tiering, "_start_helper", lambda *args: started.append(args))
    x = random_array(rng, (1, 2, 4, 4), np.float32)
    conv_transpose(x, random_array(rng, (2, 1, 3, 3), np.float32))
    assert started == [] and len(ran) == 1


def test_big_calls_and_complex_conv_with_nan_wait_for_the_tuned_kernel(monkeypatch, ran, rng):
    """Past the baselines' limits, and complex ``conv`` on its plane
    kernels with a NaN in its input (their element loops and the
    baseline's pick between two NaNs each their own way)."""
    _as_if_cold(monkeypatch)
    monkeypatch.setattr(config, "BASELINE_MAX_MULTIPLY_ADDS", 10)
    monkeypatch.setattr(config, "BASELINE_TILES_MAX_MULTIPLY_ADDS", 10)
    x = random_array(rng, (1, 2, 4, 4), np.float32)
    w = random_array(rng, (2, 1, 3, 3), np.float32)
    conv_transpose(x, w)
    monkeypatch.setattr(config, "BASELINE_MAX_MULTIPLY_ADDS", 1 << 28)
    x_complex = x.astype(np.complex64)
    x_complex[0, 1, 2, 3] = complex(1, np.nan)
    nd.conv(x_complex, w.astype(np.complex64).reshape(1, 2, 3, 3))
    assert len(ran) == 2 and all(done for _, done in ran)
    assert all(not v["kernel"].startswith("baseline") for v in _compiled.cache_info())


class _Helper:
    """A helper process that finishes when the test says so."""

    done = False

    def poll(self):
        return 0 if self.done else None


def test_channels_last_transposes_by_numpy_until_a_helper_compiles_them(monkeypatch, rng):
    """On a cold cache, a channels-last call that runs channels first
    between transposes has NumPy transpose (the same values) rather than
    compile ``swap_last_two`` in place; its helper starts from an output's
    transpose once no other helper runs, not beside the tuned kernel's."""
    _force(monkeypatch, "rows")
    x = np.ascontiguousarray(np.moveaxis(random_array(rng, (2, 5, 6, 7), np.float64), 1, -1))
    w = random_array(rng, (5, 3, 3, 3), np.float64)
    b = random_array(rng, (3,), np.float64)
    tuned = conv_transpose(x, w, b, stride=2, data_format="channels_last")
    _as_if_cold(monkeypatch)
    helper, started = _Helper(), []
    monkeypatch.setattr(tiering, "_start_helper",
                        lambda kernel, dtype: started.append(kernel) or helper)
    monkeypatch.setattr(transpose, "swap_last_two",
                        lambda *args: pytest.fail("swap_last_two compiled in place"))
    first = conv_transpose(x, w, b, stride=2, data_format="channels_last")
    assert started == ["rows"] and first.tobytes() == tuned.tobytes()
    helper.done = True  # the tuned kernel is ready: the transposes' turn
    second = conv_transpose(x, w, b, stride=2, data_format="channels_last")
    assert started == ["rows", "transposes"] and second.tobytes() == tuned.tobytes()


def test_complex_parts_move_by_numpy_until_a_helper_compiles_them(monkeypatch, rng):
    """The same for a complex call on its real twin's channels, split from
    the complex input and merged into its output: NumPy's copies (the same
    values) rather than ``move_parts`` compiled in place, its helper
    started by a merge once the tuned kernel's is done."""
    _force(monkeypatch, "rows")
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 1)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    x = random_array(rng, (2, 5, 6, 7), np.complex64)
    w = random_array(rng, (5, 3, 3, 3), np.complex64)
    tuned = conv_transpose(x, w, stride=2)
    _as_if_cold(monkeypatch)
    helper, started = _Helper(), []
    monkeypatch.setattr(tiering, "_start_helper",
                        lambda kernel, dtype: started.append(kernel) or helper)
    monkeypatch.setattr(transpose, "move_parts",
                        lambda *args: pytest.fail("move_parts compiled in place"))
    assert conv_transpose(x, w, stride=2).tobytes() == tuned.tobytes()
    assert started == ["rows"]
    helper.done = True
    assert conv_transpose(x, w, stride=2).tobytes() == tuned.tobytes()
    assert started == ["rows", "parts"]


@pytest.mark.parametrize("staged", [False, True])
@pytest.mark.parametrize("route", ["rows", "phase_tiles"])
def test_channels_last_depthwise_kernels_compile_while_the_route_computes(route, staged,
                                                                          monkeypatch, rng):
    """Channels last, a depthwise call whose kernel (depthwise_last, or its
    staged form) is neither loaded nor on disk has a helper compile it and
    meanwhile runs the route's own kernel, with the same bits; once the
    helper is done, the kernel loads and runs. (40 channels end mid
    vector: the staged form where outputs of any size stream.)"""
    from numba_deconv.cpu import driver

    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: ("gather", route, "rows"))
    monkeypatch.setattr(config, "STREAM_OUTPUT_MIN_BYTES", 0 if staged else 1 << 40)
    kernel = "depthwise_last_staged" if staged else "depthwise_last"
    x = random_array(rng, (2, 40, 5, 9), np.float32)
    w = random_array(rng, (40, 1, 2, 2), np.float32)
    kwargs = dict(groups=40, stride=4, data_format="channels_last")
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected = np.moveaxis(conv_transpose(x, w, groups=40, stride=4), 1, -1).tobytes()
    for _ in range(2):  # the route's kernel compiled and recorded, the call planned
        conv_transpose(x_last, w, **kwargs)
    monkeypatch.setattr(_compiled, "_COMPILED", {key: seconds for key, seconds
                                                 in _compiled._COMPILED.items()
                                                 if key[-1] != kernel})
    monkeypatch.setattr(config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(tiering, "on_disk", lambda *args: False)
    monkeypatch.setattr(tiering, "cache_writable", lambda *args: True)
    monkeypatch.setattr(tiering, "_helpers", {})
    helper, started, native = _Helper(), [], []
    monkeypatch.setattr(tiering, "_start_helper",
                        lambda *args: started.append(args) or helper)
    real = driver._ran_depthwise_last
    monkeypatch.setattr(driver, "_ran_depthwise_last",
                        lambda *args: native.append(real(*args)) or native[-1])
    for _ in range(2):
        assert conv_transpose(x_last, w, **kwargs).tobytes() == expected
    assert started == [(kernel, "float32")] and native == [False, False]
    assert kernel not in {v["kernel"] for v in _compiled.cache_info()}
    helper.done = True
    assert conv_transpose(x_last, w, **kwargs).tobytes() == expected
    assert native == [False, False, True] and started == [(kernel, "float32")]
    assert kernel in {v["kernel"] for v in _compiled.cache_info()}


COLD_PROCESS = """
    import json, logging, time
    import numpy as np
    import numba_deconv as nd
    from numba_deconv.cpu import tiering, transpose
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) + 1
    w = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) + 1
    first = nd.conv_transpose(x, w, stride=2)
    kernels = [v["kernel"] for v in nd.cache_info()]
    tiering.wait(600)
    second = nd.conv_transpose(x, w, stride=2)
    print(json.dumps({"first": kernels, "then": [v["kernel"] for v in nd.cache_info()],
                      "same": first.tobytes() == second.tobytes(),
                      "y": first.ravel().tolist()}))
"""


def _cold_process(cache_dir, switch="1"):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DECONV_BACKGROUND_COMPILE=switch)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(COLD_PROCESS)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_cold_process_computes_at_once_and_the_helper_fills_the_cache(tmp_path):
    """The TensorFlow example in a process with an empty cache: the
    baseline answers, a helper compiles the row kernel into the cache, the
    row kernel takes over with the same bits, and the next process loads it."""
    result, log = _cold_process(tmp_path)
    expected = reference(np.arange(1, 5, dtype=np.float64).reshape(1, 1, 2, 2),
                         np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3), stride=2)
    assert result["y"] == expected.ravel().tolist()
    assert result["first"] == ["baseline"] and result["then"] == ["baseline", "rows_serial"]
    assert result["same"]
    assert "compiles in a helper process" in log
    again, log = _cold_process(tmp_path)
    assert again["first"] == ["rows_serial"] and "helper" not in log


def test_the_switch_turns_it_off(tmp_path):
    result, _ = _cold_process(tmp_path, switch="0")
    assert result["first"] == ["rows_serial"]
