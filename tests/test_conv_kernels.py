"""The native ``conv`` kernels and the weight gradients' kernels, one by one.

Each case states the kernel the dispatcher must pick and is checked
against the definition (the slow NumPy oracles in ``reference.py``): the
``conv`` kernels over phase planes (register tiles, one loop per pair,
and that loop on the calling thread), the weight gradients' channel
tiles and dot tiles, and the BLAS path that takes a ``src`` that is not
finite. Results must not depend on the number of threads.
"""

from __future__ import annotations

import collections

import numba
import numpy as np
import pytest

import numba_deconv as nd
from helpers import launches_of, named_arguments, random_array, returns_of
from numba_deconv.cpu import driver, real_views, tiled, weight_grad_launch
from numba_deconv.cpu.simd import VECTOR_BYTES
from reference import conv_pads, conv_ref, conv_weight_grad_ref, reference
from test_conv import assert_conv_matches_oracle


@pytest.fixture
def ran(monkeypatch):
    """The kernels launched by ``driver``, counted."""
    counts = collections.Counter()
    for name, launcher in list(driver.LAUNCHERS.items()):
        def spy(*args, _launcher=launcher, _name=name, **kwargs):
            counts[_name] += 1
            return _launcher(*args, **kwargs)
        monkeypatch.setitem(driver.LAUNCHERS, name, spy)
    return counts


# id, x shape, weight shape, stride, padding, dilation, groups, dtype, kernel
CONV_CASES = [
    ("tiles-2d-s2", (2, 8, 13, 11), (24, 8, 4, 3), 2, 1, 1, 1, np.float32, "conv_tiles"),
    ("tiles-1d-s4-d2", (3, 6, 300), (10, 6, 5), 4, [(3, 1)], 2, 1, np.float64, "conv_tiles"),
    ("tiles-3d-grouped", (2, 8, 7, 6, 9), (12, 4, 3, 2, 3), (2, 1, 3), 1, (1, 2, 1), 2,
     np.float32, "conv_tiles"),
    ("tiles-k1-s3", (2, 16, 35, 37), (16, 16, 1, 1), 3, 0, 1, 1, np.float64, "conv_tiles"),
    ("planes-depthwise", (4, 16, 33, 30), (32, 1, 4, 4), 2, 1, 1, 16, np.float32,
     "conv_planes"),
    ("planes-complex", (2, 3, 40, 37), (2, 3, 3, 5), (2, 3), 2, (2, 1), 1, np.complex128,
     "conv_planes"),
    ("serial-tiny", (1, 1, 5, 5), (1, 1, 3, 3), 2, 0, 1, 1, np.float32,
     "conv_planes_serial"),
    ("serial-1d-complex", (2, 2, 9), (4, 1, 3), 2, 1, 2, 2, np.complex64,
     "conv_planes_serial"),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_kernel_matches_the_definition(case, ran, rng):
    _, x_shape, w_shape, stride, padding, dilation, groups, dtype, kernel = case
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[0],), dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = nd.conv(x, w, bias, **kwargs)
    assert set(ran) == {kernel}
    assert_conv_matches_oracle(y, x, w, bias, **kwargs)


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_conv_tiles_with_a_padding_mode(mode, ran, rng):
    x = random_array(rng, (2, 8, 12, 10), np.float32)
    w = random_array(rng, (16, 8, 3, 3), np.float32)
    kwargs = dict(stride=2, padding=((2, 1), (1, 2)), padding_mode=mode)
    assert_conv_matches_oracle(nd.conv(x, w, **kwargs), x, w, **kwargs)
    assert set(ran) == {"conv_tiles"}


@pytest.mark.parametrize("kernel_shape,kernel", [((16, 8, 3, 3), "conv_tiles"),
                                                 ((2, 1, 3, 3), "conv_planes")])
def test_conv_multiplies_the_zero_padding_like_torch(kernel_shape, kernel, ran, rng):
    """0 * inf is NaN: an infinite weight makes NaN wherever its tap meets
    the zero padding, as the definition (and PyTorch) says, and inf inside."""
    x = np.abs(random_array(rng, (2, kernel_shape[1] * (1 if kernel == "conv_tiles" else 2),
                                  64, 64), np.float32)) + 1
    w = np.abs(random_array(rng, kernel_shape, np.float32))
    w[0, 0, 0, 0] = np.inf
    groups = 1 if kernel == "conv_tiles" else 2
    y = nd.conv(x, w, stride=2, padding=1, groups=groups)
    assert set(ran) == {kernel}
    p = conv_pads((64, 64), (3, 3), stride=2, padding=1)
    expected = conv_ref(x.astype(np.float64), w.astype(np.float64), stride=p["stride"],
                        dilation=p["dilation"], pad_before=p["pad_before"],
                        pad_after=p["pad_after"], groups=groups)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))
    assert np.isnan(y[0, 0, 0, 0]) and np.isinf(y[0, 0, 1, 1])


# id, x shape, grad_output channels, kernel, stride, padding, dilation, groups, dtype, kernel
GRAD_CASES = [
    ("tiles-2d", (3, 5, 14, 11), 40, (3, 2), 2, 1, 1, 1, np.float32, "weight_tiles"),
    ("tiles-1d-f64", (2, 4, 50), 9, (5,), 3, 2, 2, 1, np.float64, "weight_tiles"),
    ("tiles-3d-grouped", (2, 4, 6, 5, 7), 32, (2, 3, 2), (1, 2, 2), 1, 1, 2, np.float32,
     "weight_tiles"),
    ("dots-2d", (2, 6, 12, 13), 3, (4, 4), 2, 1, 1, 1, np.float32, "weight_dots"),
    ("dots-depthwise", (3, 8, 15, 16), 8, (3, 3), 2, 1, (2, 1), 8, np.float64, "weight_dots"),
    ("dots-3d", (1, 2, 5, 6, 4), 2, (2, 2, 3), 1, (1, 0, 1), 1, 1, np.float64, "weight_dots"),
]


def _grad_case(case, rng):
    _, x_shape, c_out, kernel, stride, padding, dilation, groups, dtype, name = case
    p = conv_pads(x_shape[2:], kernel, stride=stride, padding=padding, dilation=dilation)
    x = random_array(rng, x_shape, dtype)
    gy = random_array(rng, (x_shape[0], c_out) + p["out_spatial"], dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref_kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
                  pad_after=p["pad_after"], groups=groups)
    return x, gy, kernel, kwargs, ref_kw, name


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_weight_grad_kernel_matches_the_definition(case, rng):
    x, gy, kernel, kwargs, ref_kw, _ = _grad_case(case, rng)
    got = nd.conv_weight_grad(x, gy, kernel, **kwargs)
    expected = conv_weight_grad_ref(x, gy, kernel, **ref_kw)
    bound = conv_weight_grad_ref(np.abs(x), np.abs(gy), kernel, **ref_kw)
    terms = x.shape[0] * int(np.prod(gy.shape[2:]))
    eps = np.finfo(x.dtype).eps
    assert got.dtype == x.dtype and got.shape == expected.shape
    assert np.all(np.abs(got - expected) <= 4 * terms * eps * bound + 1e-300)


def test_weight_grad_picks_the_kernel_by_channels(monkeypatch, rng):
    picked = []
    real = weight_grad_launch.weight_tiles, weight_grad_launch.weight_dots
    monkeypatch.setattr(weight_grad_launch, "weight_tiles",
                        lambda *a: picked.append("weight_tiles") or real[0](*a))
    monkeypatch.setattr(weight_grad_launch, "weight_dots",
                        lambda *a: picked.append("weight_dots") or real[1](*a))
    for case in GRAD_CASES:
        x, gy, kernel, kwargs, _, name = _grad_case(case, rng)
        nd.conv_weight_grad(x, gy, kernel, **kwargs)
        assert picked[-1] == name, case[0]


def test_weight_grad_of_a_non_finite_input_is_the_definition(rng, monkeypatch):
    """Scratch positions multiply zero by ``src``: a ``src`` that is not
    finite goes to the BLAS path, and the NaNs land where the sum puts them."""
    x = random_array(rng, (2, 3, 12, 12), np.float64)
    x[0, 1, 11, 11] = np.inf  # read by taps (2, 2) only, at stride 3
    gy = random_array(rng, (2, 20, 4, 4), np.float64)
    monkeypatch.setattr(driver, "weight_tiles", None)  # must not be reached
    got = nd.conv_weight_grad(x, gy, 3, stride=3, padding=1)
    p = conv_pads((12, 12), (3, 3), stride=3, padding=1)
    expected = conv_weight_grad_ref(x, gy, (3, 3), stride=p["stride"], dilation=p["dilation"],
                                    pad_before=p["pad_before"], pad_after=p["pad_after"])
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12, atol=1e-12)


def _with_threads(count, fn):
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        return fn()
    finally:
        numba.set_num_threads(before)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("case", CONV_CASES[:5], ids=[c[0] for c in CONV_CASES[:5]])
def test_conv_is_bitwise_the_same_on_any_number_of_threads(case, rng):
    _, x_shape, w_shape, stride, padding, dilation, groups, dtype, _ = case
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    one = _with_threads(1, lambda: nd.conv(x, w, **kwargs))
    two = _with_threads(2, lambda: nd.conv(x, w, **kwargs))
    np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_weight_grad_is_bitwise_the_same_on_any_number_of_threads(case, rng):
    x, gy, kernel, kwargs, _, _ = _grad_case(case, rng)
    one = _with_threads(1, lambda: nd.conv_weight_grad(x, gy, kernel, **kwargs))
    two = _with_threads(2, lambda: nd.conv_weight_grad(x, gy, kernel, **kwargs))
    np.testing.assert_array_equal(one, two)


# id, x shape, weight shape (conv_transpose's), groups, kernel of the complex
# call and of conv's (None: not checked)
COMPLEX_CASES = [
    ("twin-tiles", (2, 8, 20, 21), (8, 4, 3, 3), 2, "phase_tiles", "conv_tiles"),  # a real twin
    ("depthwise", (4, 8, 40, 41), (8, 1, 3, 3), 8, "planes", "conv_planes"),  # too few pairs
    # Channels enough for BLAS's complex products: the twin beats them too.
    ("thick", (1, 64, 9, 9), (64, 64, 2, 2), 1, "phase_tiles", "conv_tiles"),
    # ... and with 5x5 taps on 9x9 the twin's weights outweigh its positions:
    # the columns kernel, on the complex arrays' real views.
    ("thick-many-taps", (1, 64, 9, 9), (64, 64, 5, 5), 1, "column_tiles", "conv_tiles"),
    # One channel, 6.25 taps per phase on 2304 positions: the twin's one-row
    # tiles (conv_transpose only; conv keeps its complex planes).
    ("one-channel-many-taps", (1, 1, 48, 48), (1, 1, 5, 5), 1, "phase_tiles",
     "conv_planes_serial"),
    ("one-channel-small-image", (1, 1, 40, 40), (1, 1, 5, 5), 1, "planes", None),
]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("case", COMPLEX_CASES, ids=[c[0] for c in COMPLEX_CASES])
def test_complex_data_runs_as_a_real_twin_where_that_pays(case, dtype, ran, rng, monkeypatch):
    """Complex data with channel pairs enough for register tiles (or, in
    conv_transpose, few pairs with many taps on a large image) runs as a
    real (transposed) convolution with twice the channels each way, or
    where that takes the columns kernel, on the real views of its arrays;
    depthwise and small shapes keep the complex kernels."""
    from helpers import assert_matches_reference, returns_of

    _, x_shape, w_shape, groups, kernel, conv_kernel = case
    views = returns_of(monkeypatch, real_views, "ran_on_real_views")
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[1] * groups,), dtype)
    y = nd.conv_transpose(x, w, bias, stride=2, padding=1, groups=groups)
    if kernel == "column_tiles":
        assert not ran and views == [True]
    else:
        assert set(ran) == {kernel}
    assert_matches_reference(y, x, w, bias, stride=2, padding=1, groups=groups)
    ran.clear()
    # conv, the other way round: its weight is (C_out, C_in/groups, *k).
    wc = random_array(rng, (w_shape[1] * groups, w_shape[0] // groups) + w_shape[2:], dtype)
    yc = nd.conv(x, wc, bias, stride=2, padding=1, groups=groups)
    if conv_kernel:
        assert set(ran) == {conv_kernel}
    assert_conv_matches_oracle(yc, x, wc, bias, stride=2, padding=1, groups=groups)


# Tile edges, beyond one tile, and a short side (3 or 5) whose tasks take
# runs of tiles along the long one (a ragged last run).
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 33, 65), (3, 64, 7), (1, 100, 31),
                                   (2, 3, 1000), (2, 1000, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.int16])
def test_channels_last_transpose_is_a_plain_transpose(shape, dtype, rng):
    """The parallel tiled transpose around channels-last calls."""
    from numba_deconv.cpu.launch import parallel
    from numba_deconv.cpu.transpose import swap_last_two

    src = random_array(rng, shape, dtype)
    dst = np.empty((shape[0], shape[2], shape[1]), dtype)
    parallel(swap_last_two, src, dst)
    np.testing.assert_array_equal(dst, src.transpose(0, 2, 1))


@pytest.mark.parametrize("parallel_min", [1, 1 << 62], ids=["threads", "calling-thread"])
def test_layout_copies_transpose_on_either_side_of_their_threshold(parallel_min, rng,
                                                                    monkeypatch):
    """Transposes run on the calling thread below a size, on all threads
    from it: the same copy either way."""
    from numba_deconv.cpu import transpose

    monkeypatch.setattr(transpose, "_PARALLEL_MIN_TRANSPOSE", parallel_min)
    x = random_array(rng, (2, 7, 5, 33), np.float32)  # (N, *S, C)
    first = transpose.to_channels_first(x)
    np.testing.assert_array_equal(first, np.moveaxis(x, -1, 1))
    np.testing.assert_array_equal(transpose.to_channels_last(first), x)


def test_channels_last_calls_match_channels_first_bits(rng):
    x = random_array(rng, (3, 16, 9, 10), np.float32)
    w = random_array(rng, (16, 8, 3, 3), np.float32)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    first = nd.conv_transpose(x, w, stride=2, padding=1)
    last = nd.conv_transpose(x_last, w, stride=2, padding=1, data_format="channels_last")
    assert last.flags.c_contiguous
    np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))
    # Not contiguous, or another dtype: NumPy's transposing copy, same bits.
    strided = nd.conv_transpose(x_last[:, :, ::-1][:, :, ::-1], w, stride=2, padding=1,
                                data_format="channels_last")
    np.testing.assert_array_equal(strided, last)


@pytest.mark.parametrize("x_shape, w_shape", [
    ((2, 1, 9, 10), (1, 1, 3, 3)),  # one channel each way: no transposing copy at all
    ((2, 4, 9, 10), (4, 1, 3, 3)),  # one output channel
    ((2, 1, 9, 10), (1, 3, 3, 3)),  # one input channel
    ((2, 5, 1, 1), (5, 3, 1, 1)),  # one position each way
])
def test_channels_last_with_one_channel_or_position_matches_channels_first(x_shape, w_shape,
                                                                          rng):
    """Where one channel or one position leaves the memory order as it is,
    the layouts swap by reshaping: the same bits, contiguous results, and
    inputs in another layout or byte order copied as before."""
    x = random_array(rng, x_shape, np.float32)
    w = random_array(rng, w_shape, np.float32)
    first = nd.conv_transpose(x, w, stride=2)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected = np.moveaxis(first, 1, -1)
    for given in (x_last, x_last.astype(x_last.dtype.newbyteorder()), x_last[::-1][::-1],
                  np.asfortranarray(x_last), x_last[0]):
        last = nd.conv_transpose(given, w, stride=2, data_format="channels_last")
        assert last.flags.c_contiguous
        np.testing.assert_array_equal(last, expected[0] if given.ndim == 3 else expected)


# conv on its register tiles: x shape (conv's input), conv's weight shape, kwargs
# (strides 1-3 along W, dilation, groups, 1-D, 3-D, a 1x1 kernel).
CONV_PARTS = [
    ((2, 8, 20, 21), (6, 4, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((1, 6, 40), (10, 6, 4), dict(stride=3, padding=2, dilation=2)),
    ((1, 4, 7, 8, 9), (8, 4, 3, 2, 3), dict(stride=(1, 2, 2), padding=(1, 0, 1))),
    ((2, 10, 9, 11), (12, 10, 1, 1), {}),
]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_PARTS)
def test_conv_tiles_read_and_write_complex_parts_in_place(x_shape, w_shape, kwargs, dtype, rng,
                                                          monkeypatch, fresh_routes):
    """Complex ``conv`` runs as its real twin on the conv tiles, which split
    each complex channel's parts into their window and merge the sums into
    the complex output where it lies: the oracle's values, and the bits of
    the twin computed on its channels split out and merged back."""
    from numba_deconv import api, config
    from numba_deconv.cpu import transpose

    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 1)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    in_place = []
    real_launch = driver.LAUNCHERS["conv_tiles"]

    def spy(*args, parts=False):
        in_place.append(parts)
        return real_launch(*args, parts=parts)
    monkeypatch.setitem(driver.LAUNCHERS, "conv_tiles", spy)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[0],), dtype)
    twin = nd.conv(transpose.to_parts(x), api._twin_weight(w, transposed=False),
                   b.view(x.real.dtype), **kwargs)
    expected = np.empty((x_shape[0], twin.shape[1] // 2) + twin.shape[2:], dtype)
    transpose.from_parts(twin, expected)
    assert in_place == [False]
    y = nd.conv(x, w, b, **kwargs)
    assert in_place == [False, True]
    np.testing.assert_array_equal(y, expected)
    assert_conv_matches_oracle(y, x, w, b, **kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 6, 5, 7), (3, 4, 9, 700), (1, 8, 2, 3, 4),
                                   (1, 2, 37)])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_parts_split_into_twin_channels_and_back(shape, dtype, rng):
    """A complex array's real twin: each channel's real parts, then its
    imaginary parts (on the calling thread or the pool; whole vectors and
    the elements past them), and merged back to the same complex array."""
    from numba_deconv.cpu import transpose

    a = random_array(rng, shape, dtype)
    twin = transpose.to_parts(a)
    n, c = shape[:2]
    expected = np.stack((a.real, a.imag), axis=2).reshape((n, 2 * c) + shape[2:])
    assert twin.dtype == a.real.dtype
    np.testing.assert_array_equal(twin, expected)
    back = np.empty_like(a)
    transpose.from_parts(twin, back)
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 40, 9, 37), (40, 24, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 17, 70), (17, 33, 4), dict(stride=3, padding=2, dilation=2)),
    ((2, 16, 5, 6, 35), (16, 16, 2, 3, 2), dict(stride=(1, 2, 2))),
    ((3, 32, 8, 8), (32, 8, 2, 2), dict(stride=2, groups=2)),
    ((1, 48, 3, 50), (48, 20, 1, 5), dict(stride=(1, 4), padding=(0, 2))),
    # Whole rows merged into one run in and one stretch out (1x1 kernels).
    ((2, 20, 6, 9), (20, 24, 1, 1), {}),
    ((3, 18, 5, 6), (18, 17, 1, 2), dict(stride=(1, 2))),
    # Output rows of the bias alone (kernel < stride along H, D), set up front.
    ((2, 9, 7, 11), (9, 21, 1, 3), dict(stride=(3, 1), padding=(0, 1))),
    ((2, 16, 4, 3, 9), (16, 24, 2, 1, 2), dict(stride=(3, 2, 2), dilation=(1, 1, 3))),
])
def test_phase_tiles_read_and_write_channels_last_in_place(x_shape, w_shape, kwargs, dtype,
                                                         rng, monkeypatch):
    """Channels-last data goes through the phase tiles as it is (transposed
    tiles of a vector square and ragged edges, in and out), once they are
    compiled: the channels-first bits, bias included."""
    from numba_deconv.cpu import driver

    native = []
    real = driver._ran_in_place
    monkeypatch.setattr(driver, "_ran_in_place", lambda *a: native.append(real(*a))
                        or native[-1])
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    first = nd.conv_transpose(x, w, b, **kwargs)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for _ in range(2):
        last = nd.conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        assert last.tobytes() == np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    out = np.full(last.shape, np.nan, dtype)
    assert nd.conv_transpose(x_last, w, b, data_format="channels_last", out=out, **kwargs) is out
    assert out.tobytes() == last.tobytes()
    assert native[-1] is True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, kernel, kwargs", [
    ((2, 9, 20, 37), (3, 3), dict(stride=2, padding=1, output_padding=1)),  # vector shuffles
    ((1, 12, 7, 50), (2, 5), dict(stride=(1, 3), padding=(0, 2))),  # by the table
    ((3, 8, 4, 5, 6), (2, 3, 2), dict(stride=(2, 1, 5))),            # short rows, stride 5
])
def test_phase_tiles_write_one_channel_last_as_channels_first(x_shape, kernel, kwargs, dtype,
                                                              rng, monkeypatch, fresh_routes):
    """One output channel lies channels last as channels first: the tiles
    scatter its rows as they do channels first; the channels-first bits."""
    from numba_deconv import _dispatch
    from numba_deconv.cpu import driver

    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    native = []
    real = driver._ran_in_place
    monkeypatch.setattr(driver, "_ran_in_place", lambda *a: native.append(real(*a))
                        or native[-1])
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, (x_shape[1], 1) + kernel, dtype)
    b = random_array(rng, (1,), dtype)
    first = nd.conv_transpose(x, w, b, **kwargs)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for _ in range(2):
        last = nd.conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        assert last.tobytes() == np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    assert native[-1] is True


def _channels_last_launches(launches, x_last, w, b, kwargs, expected):
    """The :func:`.tiled.direct_tiled` launches of a channels-last call
    (its second: the first may go the transposed way), whose bits must be
    ``expected``."""
    for _ in range(2):
        launches.clear()
        last = nd.conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        assert last.tobytes() == expected
    return list(launches)


@pytest.fixture
def tiled_launches(monkeypatch, fresh_routes):
    """Every call on the phase tiles, and the arguments of each
    :func:`.tiled.direct_tiled` launch, in a list."""
    from numba_deconv import _dispatch

    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    return launches_of(monkeypatch, tiled.direct_tiled)


def _checked_channels_first(rng, x_shape, w_shape, kwargs, dtype):
    """Random weights and bias, the input channels last, and the
    channels-first result (checked against the oracle) with its bits
    channels last: what a channels-last call must give."""
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    first = nd.conv_transpose(x, w, b, **kwargs)
    np.testing.assert_allclose(first, reference(x, w, b, **kwargs), rtol=1e-4, atol=1e-4)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return w, b, x_last, first, np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 5, 9, 37), (5, 4, 3, 3), dict(stride=2, padding=1, output_padding=1)),  # 8 rows
    ((1, 6, 7, 23), (6, 3, 2, 5), dict(stride=(1, 3), padding=(0, 2))),  # 9: f64 in tiles
    ((3, 4, 4, 5, 6), (4, 2, 2, 3, 2), dict(stride=(2, 1, 4))),         # 8, rows of 21
    ((1, 8, 3, 50), (8, 8, 1, 4), dict(stride=(1, 2))),                 # 16: f64 in tiles
    ((2, 3, 5, 11), (3, 5, 3, 3), dict(padding=1)),                     # 5, stride 1
    ((1, 7, 6, 3), (7, 2, 2, 7), dict(stride=(2, 4), dilation=(1, 2))),  # rows of 3 phases
    ((2, 6, 6, 9), (6, 2, 3, 3), dict(stride=2, groups=3)),             # 2 of 6: tiles
])
def test_phase_tiles_interleave_few_channels_last(x_shape, w_shape, kwargs, dtype, rng,
                                                  monkeypatch, fresh_routes):
    """A row's channels and phases interleaved in whole vectors where they
    fill at most one (every channel in the task, fewer than a vector), in
    part tiles elsewhere: the channels-first bits, bias included, with rows
    that end inside a vector and a phase."""
    from numba_deconv import _dispatch

    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    w, b, x_last, first, expected = _checked_channels_first(rng, x_shape, w_shape, kwargs,
                                                            dtype)
    out = np.full(first.shape[:1] + first.shape[2:] + first.shape[1:2], np.nan, dtype)
    nd.conv_transpose(x_last, w, b, data_format="channels_last", out=out, **kwargs)
    assert out.tobytes() == expected



@pytest.mark.usefixtures("tiles_last")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 8, 5, 9), (8, 13, 3, 3), dict(stride=1, padding=1, groups=2)),  # 13 a group
    ((3, 12, 40), (12, 7, 1), dict(stride=4, output_padding=3, groups=2)),  # bias-only phases
    ((1, 10, 300), (10, 8, 6), dict(stride=1, dilation=3, padding=2, groups=5)),  # stretches
    ((2, 6, 3, 4, 5), (6, 3, 2, 3, 2), dict(stride=(2, 1, 3), groups=3)),  # 3-D, 3 a group
    ((1, 4, 6, 7), (4, 8, 4, 4), dict(stride=3, padding=1, groups=4)),  # depthwise x8
    ((2, 4, 5, 6), (4, 16, 3, 3), dict(stride=2, groups=2)),  # 16 a group: each on its own
    ((2, 16, 5, 4, 3), (16, 6, 2, 2, 2), dict(stride=3, dilation=3, padding=2, groups=8)),  # r50
])
def test_phase_tiles_run_every_group_together_channels_last(x_shape, w_shape, kwargs, dtype,
                                                            rng, monkeypatch, tiled_launches):
    """Channels last, a grouped call whose groups have fewer output
    channels than whole vectors runs every group of a stretch in one task,
    each group's sums in its rows of one accumulator, and scatters every
    channel of a position at once (groups of whole vectors keep a task
    each): the oracle's values and the channels-first bits, with stretches
    cut for want of tasks."""
    from numba_deconv import config
    from numba_deconv.cpu import simd

    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 8)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 32)
    w, b, x_last, first, expected = _checked_channels_first(rng, x_shape, w_shape, kwargs,
                                                            dtype)
    launches = _channels_last_launches(tiled_launches, x_last, w, b, kwargs, expected)
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    assert [named_arguments(tiled.direct_tiled, args)["together"] for args in launches] == [
        w_shape[1] % lanes != 0]


@pytest.mark.usefixtures("tiles_last")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, whole_positions", [
    # 82 channels a position (328 or 656 bytes: lines shared), 3 images
    ((3, 5, 8, 23), (5, 82, 3, 3), dict(stride=2, padding=2, dilation=3), True),
    ((4, 3, 20, 8), (3, 31, 3, 3), dict(stride=3, dilation=2), True),  # 31 channels
    ((2, 4, 25, 9), (4, 144, 1, 1), dict(), False),  # 144: whole lines, ranges of them
    ((1, 6, 3, 5), (6, 41, 3, 3), dict(stride=3, padding=1), False),  # too few positions
])
def test_phase_tiles_keep_positions_whole_channels_last(x_shape, w_shape, kwargs,
                                                        whole_positions, dtype, rng,
                                                        monkeypatch, tiled_launches):
    """Channels last, an output position whose channels end mid cache line
    is written whole by one task where whole positions still make enough
    tasks; else (and where a position is whole lines) the output channels
    split across tasks in ranges of whole lines: the channels-first bits
    either way."""
    from numba_deconv import _dispatch, config

    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 4)
    monkeypatch.setattr(config, "TILED_MIN_TASK_MULTIPLY_ADDS", 1)  # small shapes, split
    monkeypatch.setattr(_dispatch, "thread_count", lambda: 2)  # the split of 2 threads
    w, b, x_last, first, expected = _checked_channels_first(rng, x_shape, w_shape, kwargs,
                                                            dtype)
    launches = _channels_last_launches(tiled_launches, x_last, w, b, kwargs, expected)
    (block_parts, together), = [
        (named["block_parts"], named["together"]) for named in
        (named_arguments(tiled.direct_tiled, args) for args in launches)]
    assert together == whole_positions
    assert (block_parts == 1) == whole_positions  # else the channels are split


@pytest.mark.parametrize("blocks, parts, unit", [
    (18, 4, 2), (11, 3, 2), (37, 3, 1), (5, 8, 2), (1, 3, 2), (9, 2, 1)])
def test_tiled_task_channel_ranges_are_whole_units(blocks, parts, unit):
    """The register-tile blocks of a stretch split into ``parts`` ranges of
    whole ``unit`` blocks (channels last, a cache line of channels), which
    cover every block once, as evenly as whole units allow."""
    ranges = [tiled.task_bounds(part, 64, 64, blocks, parts, 1, 1, blocks * tiled.TILE_ROWS,
                                1, False, unit)[4:6] for part in range(parts)]
    assert [b for b0, b1 in ranges for b in range(b0, b1)] == list(range(blocks))
    sizes = [b1 - b0 for b0, b1 in ranges if b1 > b0]
    assert all(b0 % unit == 0 for b0, b1 in ranges if b1 > b0)
    assert max(sizes) - min(sizes) <= unit



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 4, 9, 5), (4, 12, 6, 6), dict(stride=4, padding=1)),  # rows of 6 a phase
    ((1, 3, 11, 7), (3, 20, 3, 3), dict(stride=(1, 3), dilation=2)),  # 20: a part vector
    ((2, 5, 6, 3), (5, 9, 2, 2), dict(stride=1, padding=(0, 1))),  # stride 1, rows of 2
    ((1, 4, 3, 4, 5), (4, 6, 3, 2, 5), dict(stride=(1, 2, 2), padding=(1, 0, 2))),  # 3-D
    ((2, 6, 7, 4), (6, 5, 3, 3), dict(stride=2, groups=2)),  # groups together, 10 channels
])
def test_phase_tiles_scatter_short_rows_channels_last(x_shape, w_shape, kwargs, dtype, rng,
                                                      monkeypatch, fresh_routes):
    """Channels last, where a row of the output has fewer outputs a phase
    than a vector, a vector of a phase's sums spans several rows (and the
    gaps between them) and each column goes to its own position: the
    oracle's values and the channels-first bits, with the output channels
    split into blocks across tasks (a task's channels part of each
    position) and whole."""
    from numba_deconv import _dispatch, config

    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    w, b, x_last, first, expected = _checked_channels_first(rng, x_shape, w_shape, kwargs,
                                                            dtype)
    for tasks_per_thread in (1, 64):  # blocks of channels split across tasks at 64
        monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", tasks_per_thread)
        _dispatch.reset()
        for _ in range(2):  # the first call may go the transposed way
            out = np.full(first.shape[:1] + first.shape[2:] + first.shape[1:2], np.nan, dtype)
            nd.conv_transpose(x_last, w, b, data_format="channels_last", out=out, **kwargs)
            assert out.tobytes() == expected



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, workspace", [
    ((2, 7, 4, 13), (7, 3, 3, 3), dict(stride=1, padding=1, dilation=2), 8 << 20),
    ((1, 6, 11, 4), (6, 2, 2, 2), dict(stride=2, groups=2), 8 << 20),  # a group's channels
    ((2, 5, 9, 6), (5, 4, 3, 2), dict(stride=(2, 1), padding=(1, 0)), 3000),  # slabs
    ((1, 4, 3, 4, 11), (4, 3, 2, 2, 3), dict(stride=(1, 2, 1)), 8 << 20),  # 3-D
])
def test_blas_reads_channels_last_input_in_place(x_shape, w_shape, kwargs, workspace, dtype,
                                                 rng, monkeypatch, fresh_routes):
    """Channels last, BLAS reads the input where it lies, as the transposed
    operand of its products (no transposed copy): the channels-first
    bits, also with the input in slabs and a group's channels a stretch of
    each position's."""
    from numba_deconv import _dispatch, config
    from numba_deconv.cpu import transpose

    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: ("columns", "blas", "blas"))
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    copies = []
    real = transpose.to_channels_first
    monkeypatch.setattr(transpose, "to_channels_first", lambda x: copies.append(1) or real(x))
    w, b, x_last, first, expected = _checked_channels_first(rng, x_shape, w_shape, kwargs,
                                                            dtype)
    for _ in range(2):  # the first call may copy (BLAS not yet recorded channels last)
        copies.clear()
        last = nd.conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        assert last.tobytes() == expected
    assert copies == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("x_shape, c_out, groups, workspace", [
    ((2, 9, 5, 7), 4, 1, 8 << 20),
    ((3, 8, 6, 3, 5), 6, 2, 8 << 20),  # 3-D, groups
    ((2, 6, 12, 5), 5, 1, 1000),  # slabs of the outer dim
    ((1, 6, 4, 10), 3, 3, 300),  # ... of H (D, the outer one, is 1)
])
def test_blas_writes_pointwise_products_as_the_output(x_shape, c_out, groups, workspace, dtype,
                                                     rng, monkeypatch, fresh_routes):
    """A pointwise call at stride 1 on BLAS: the products go straight to
    the output, plus the bias, with no columns folded: the oracle's values
    (channels first and last, in slabs and groups; channels last the
    products are the output's positions x channels, ``_blas.run_blas_last``)."""
    from numba_deconv import _dispatch, config
    from numba_deconv.cpu import _blas

    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: ("columns", "blas", "blas"))
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    monkeypatch.setattr(config, "BLAS_LAST_MIN_BLOCK_BYTES", 0)
    monkeypatch.setattr(_blas, "col2im", lambda *args: pytest.fail("columns folded"))
    monkeypatch.setattr(_blas, "col2im_last", lambda *args: pytest.fail("columns folded"))
    ran_last = returns_of(monkeypatch, driver, "run_blas_last")
    w_shape = (x_shape[1], c_out) + (1,) * (len(x_shape) - 2)
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    b = random_array(rng, (c_out * groups,), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected = reference(x, w, b, groups=groups)
    for _ in range(2):  # the first call of each layout may run the baseline
        first = nd.conv_transpose(x, w, b, groups=groups)
        last = nd.conv_transpose(x_last, w, b, groups=groups, data_format="channels_last")
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), expected, rtol=1e-5, atol=1e-5)
    assert ran_last[-1:] == [True]


# Depthwise calls: x shape (channels first), kernel, kwargs.
DEPTHWISE_LAST = [
    ((2, 16, 9, 10), (4, 4), dict(stride=2, padding=1)),    # depthwise_2d's taps
    ((1, 5, 30), (3,), dict(stride=3, padding=2, dilation=2, output_padding=1)),
    ((1, 3, 4, 5, 6), (3, 2, 3), dict(stride=(1, 2, 2), padding=(1, 0, 1))),
    ((2, 7, 6, 5), (5, 7), dict(stride=(2, 3), padding=(0, 4))),  # pairs and lone taps
    ((1, 21, 6, 7), (3, 3), dict(stride=2, padding=1)),     # whole vectors, then the rest
    ((1, 4, 7, 8), (3, 3), dict(stride=2, dilation=2, padding=1)),  # all W taps on one phase
    ((2, 17, 5, 6), (2, 1), dict(stride=3, output_padding=2)),  # phases with the bias alone
    ((1, 6, 200), (4,), dict(stride=2, padding=1)),         # one long row, in stretches
    ((1, 2, 90), (5,), dict(stride=1, padding=6, dilation=2)),  # padding past the kernel
    # Stride 1 along W: taps that reuse the last one's inputs, positions
    # past the last tile of four; 18-54 channels, padded to whole vectors.
    ((1, 18, 5, 11), (3, 4), dict(stride=1, padding=(1, 2))),
]

#: The routes whose depthwise calls depthwise_last runs channels last, and
#: the channel multipliers it takes there (the others stay as they were).
DEPTHWISE_ROUTES = {"planes": ("gather", "planes", "rows"), "rows": ("gather", "rows", "rows"),
                    "phase_tiles": ("gather", "phase_tiles", "rows")}


def _depthwise_last_runs(monkeypatch):
    """The list that each later channels-last depthwise call appends to:
    whether depthwise_last ran it."""
    runs = []
    real = driver._ran_depthwise_last
    monkeypatch.setattr(driver, "_ran_depthwise_last", lambda *a: runs.append(real(*a))
                        or runs[-1])
    return runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("route", DEPTHWISE_ROUTES)
@pytest.mark.parametrize("x_shape, kernel, kwargs", DEPTHWISE_LAST)
def test_depthwise_calls_read_and_write_channels_last_in_place(x_shape, kernel, kwargs, route,
                                                               dtype, rng, monkeypatch,
                                                               fresh_routes):
    """A depthwise call that the plane kernel, the row kernel or (with at
    most 4 output channels a group) the phase tiles run takes channels-last
    data as it lies: the channels-first bits, bias included, for channel
    multipliers 1-3 (and 8 on the tiles, which they keep); the rows cut
    into as many stretches as there are outputs. A weight that is not
    finite goes the transposed way."""
    from numba_deconv import _dispatch, config

    if route == "phase_tiles" and np.dtype(dtype).kind == "c":
        pytest.skip("the phase tiles take complex data as their real twin, channels first")
    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: DEPTHWISE_ROUTES[route])
    # Stretches of one output a phase: every stretch boundary of the rows.
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS_CROWDED", 1)
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 64)
    native = _depthwise_last_runs(monkeypatch)
    channels = x_shape[1]
    x = random_array(rng, x_shape, dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for multiplier in (1, 2, 3) + ((8,) if route == "phase_tiles" else ()):
        w = random_array(rng, (channels, multiplier) + kernel, dtype)
        b = random_array(rng, (channels * multiplier,), dtype)
        first = nd.conv_transpose(x, w, b, groups=channels, **kwargs)
        expected = np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
        for _ in range(2):
            last = nd.conv_transpose(x_last, w, b, groups=channels, data_format="channels_last",
                                     **kwargs)
            assert last.tobytes() == expected
        # (The first channels-last call may find the kernel not yet recorded
        # for its variant, and go the transposed way, with the same bits.)
        assert native == ([] if multiplier == 8 else [True] * len(native)) and (
            native or multiplier == 8)
        native.clear()
    w = random_array(rng, (channels, 1) + kernel, dtype)
    w[-1, 0, 0] = np.inf
    last = nd.conv_transpose(x_last, w, groups=channels, data_format="channels_last", **kwargs)
    assert native == [False]  # the transposed way: the row kernel, as channels first
    first = nd.conv_transpose(x, w, groups=channels, **kwargs)
    np.testing.assert_array_equal(np.moveaxis(last, -1, 1), first)


def _assert_last_matches_first_and_oracle(x, x_last, w, b, channels, kwargs):
    """A depthwise call channels first matches the oracle, and channels
    last gives its bits."""
    first = nd.conv_transpose(x, w, b, groups=channels, **kwargs)
    np.testing.assert_allclose(first, reference(x, w, b, groups=channels, **kwargs),
                               rtol=1e-5, atol=1e-5)
    expected = np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    for _ in range(2):  # the first call may go the transposed way (see above)
        last = nd.conv_transpose(x_last, w, b, groups=channels, data_format="channels_last",
                                 **kwargs)
        assert last.tobytes() == expected


# Depthwise calls whose rows stay whole: x shape (channels first), kernel, kwargs.
DEPTHWISE_LAST_TILES = [
    ((2, 18, 5, 11), (3, 4), dict(stride=1, padding=(1, 2))),  # taps that slide along W
    ((1, 21, 6, 13), (3, 3), dict(stride=(2, 1), dilation=(1, 2), padding=1)),  # no slide
    ((1, 3, 41), (3,), dict(stride=3, padding=1)),  # fewer channels than a vector, one tap
    ((1, 5, 23), (5,), dict(stride=2, padding=2)),  # pairs of taps (planes)
    ((2, 3, 4, 6, 5), (3, 3, 2), dict(stride=(1, 2, 1), dilation=(2, 1, 1), padding=1)),  # 3-D
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", DEPTHWISE_ROUTES)
@pytest.mark.parametrize("x_shape, kernel, kwargs", DEPTHWISE_LAST_TILES)
def test_depthwise_last_sums_positions_four_at_a_time(x_shape, kernel, kwargs, route, dtype,
                                                      rng, monkeypatch, fresh_routes):
    """depthwise_last sums four positions of a phase together where a
    task's stretch has them, reusing a tap's inputs for the next tap one
    position back, then the last positions one at a time; its tasks take
    blocks of output rows, whose input rows are copied once into a ring
    (or, where the ring would be too large, once an output row): the
    oracle's values and the channels-first bits, channel multipliers 1
    and 2 (1-42 channels, padded to whole vectors beyond one)."""
    from numba_deconv import _dispatch, config

    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: DEPTHWISE_ROUTES[route])
    native = _depthwise_last_runs(monkeypatch)
    channels = x_shape[1]
    x = random_array(rng, x_shape, dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for multiplier, ring_bytes in ((1, 1 << 20), (2, 1 << 20), (2, 0)):
        # Rows in blocks of up to 8 a task, read from a ring of input rows
        # (none: copied anew for each output row).
        monkeypatch.setattr(config, "DEPTHWISE_LAST_RING_BYTES", ring_bytes)
        monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 1)
        _dispatch.reset()
        w = random_array(rng, (channels, multiplier) + kernel, dtype)
        b = random_array(rng, (channels * multiplier,), dtype)
        _assert_last_matches_first_and_oracle(x, x_last, w, b, channels, kwargs)
        assert native and all(native)
        native.clear()


# Depthwise calls whose positions' channels pass a vector and end mid one:
# x shape (channels first), kernel, kwargs.
DEPTHWISE_LAST_STAGED = [
    ((2, 19, 37), (2,), dict(stride=4)),  # phases with no tap: the bias alone
    ((1, 23, 30), (3,), dict(stride=3, padding=1, output_padding=2)),
    ((2, 18, 5, 11), (3, 4), dict(stride=1, padding=(1, 2))),  # taps that slide along W
    ((1, 9, 4, 6, 5), (2, 1, 3), dict(stride=(1, 2, 2), dilation=(2, 1, 1))),  # 3-D
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, kernel, kwargs", DEPTHWISE_LAST_STAGED)
def test_depthwise_last_stages_outputs_whose_channels_end_mid_vector(x_shape, kernel, kwargs,
                                                                     dtype, rng, monkeypatch,
                                                                     fresh_routes):
    """Through its stage, depthwise_last writes the channels-first bits and
    the oracle's values: each tile of four positions of every phase as
    one run from wherever it starts in the output's vectors, the last
    positions straight; rows cut into stretches of 5 or more (channel
    multipliers 1 and 2, 9-46 channels: past a vector in float64, mid one
    in float32 for some)."""
    from numba_deconv import _dispatch, config

    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: DEPTHWISE_ROUTES["rows"])
    monkeypatch.setattr(config, "STREAM_OUTPUT_MIN_BYTES", 0)
    monkeypatch.setattr(config, "DEPTHWISE_LAST_STAGE_MAX_TAPS", np.inf)
    # Stretches of 5 outputs a phase or more: a tile of four, then some
    # straight.
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS_CROWDED", 5)
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 64)
    native = _depthwise_last_runs(monkeypatch)
    staged = []
    real = driver.stages_outputs
    monkeypatch.setattr(driver, "stages_outputs", lambda *a: staged.append(real(*a))
                        or staged[-1])
    channels = x_shape[1]
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    x = random_array(rng, x_shape, dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for multiplier in (1, 2):
        w = random_array(rng, (channels, multiplier) + kernel, dtype)
        b = random_array(rng, (channels * multiplier,), dtype)
        _assert_last_matches_first_and_oracle(x, x_last, w, b, channels, kwargs)
        c_out = channels * multiplier
        assert native and all(native)
        assert staged == [c_out > lanes and c_out % lanes != 0] * len(native)
        native.clear()
        staged.clear()


@pytest.mark.parametrize("dtype, channels, kernel, stride, out_bytes, expected", [
    (np.float32, 47, (2,), (4,), 8 << 20, True),
    (np.float64, 47, (1, 2, 2), (1, 2, 2), 8 << 20, True),  # one tap an output phase
    (np.float32, 48, (2,), (4,), 8 << 20, False),  # whole vectors a position
    (np.float32, 15, (2,), (4,), 8 << 20, False),  # inside one vector
    (np.float32, 47, (4,), (2,), 8 << 20, False),  # two taps an output phase
    (np.float32, 47, (3, 2), (2, 2), 8 << 20, True),  # 1.5 exactly
    (np.float32, 47, (2,), (4,), 1 << 10, False),  # an output that the caches hold
    (np.complex64, 47, (2,), (4,), 8 << 20, False),  # complex: the loop by element
])
def test_depthwise_last_stages_stores_to_memory_alone(dtype, channels, kernel, stride,
                                                      out_bytes, expected, monkeypatch):
    """The stage is for calls that are mostly stores to memory of
    positions whose channels straddle vectors (config)."""
    from numba_deconv import config
    from numba_deconv.cpu.depthwise_last import stages_outputs

    monkeypatch.setattr(config, "STREAM_OUTPUT_MIN_BYTES", 2 << 20)
    assert stages_outputs(np.dtype(dtype), channels, kernel, stride, out_bytes) == expected


def _planes_window(x, n, c0, c_count, planes, p0, win_len, pitch, pad, stride):
    """The phase planes' window by its definition: grid position ``P`` of
    plane ``(r_d, r_h, r_w)`` is input ``(P's grid index) * stride + r -
    pad`` along each dim, zero outside the input."""
    n_planes = planes.shape[0]
    window = np.zeros(c_count * n_planes * win_len, dtype=x.dtype)
    for ci in range(c_count):
        for pl, r in enumerate(planes):
            for at in range(win_len):
                grid = np.unravel_index(p0 + at, pitch)
                i = [g * s + rr - p for g, s, rr, p in zip(grid, stride, r, pad)]
                if all(0 <= i_k < size for i_k, size in zip(i, x.shape[2:])):
                    window[(ci * n_planes + pl) * win_len + at] = x[n, c0 + ci, i[0], i[1], i[2]]
    return window


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("kernel, stride, pad", [
    ((1, 4, 4), (1, 2, 2), (0, 1, 1)),   # depthwise_2d's conv: both W planes, split
    ((1, 5, 5), (1, 2, 2), (0, 2, 2)),
    ((1, 3, 3), (1, 2, 2), (0, 0, 0)),   # the odd plane a column shorter
    ((1, 2, 2), (1, 2, 2), (0, 1, 3)),   # large padding: rows that start late
    ((2, 3, 1), (2, 1, 2), (1, 1, 0)),   # one W plane: nothing to split
    ((1, 3, 4), (1, 3, 3), (0, 1, 2)),   # stride 3: three planes, not split
])
def test_conv_window_holds_the_phase_planes(kernel, stride, pad, dtype, rng):
    """conv's window (the stride-2 W planes split from one load where their
    rows are short, ``config.CONV_SPLIT_MAX_ROW``): every window, from the
    image's start, a row's middle and its end, and windows of several
    lengths, equals the planes by their definition; the runs kept for one
    window serve the next only where it is the same window."""
    from numba_deconv.cpu import correlate

    x = random_array(rng, (2, 3, 3, 11, 19), dtype)
    out_spatial = tuple((size + 2 * p - k) // s + 1
                        for size, k, s, p in zip(x.shape[2:], kernel, stride, pad))
    pitch, planes, _, offsets = correlate.plane_tables(kernel, stride, (1, 1, 1), out_spatial)
    span = int(np.prod(pitch))
    runs, built = correlate._runs_room(span, pitch[2], planes.shape[0])
    for p0, win_len in [(0, span), (pitch[2] // 2, 2 * pitch[2]), (span - 7, 7), (3, 1),
                        (3, 1), (pitch[2] + 1, pitch[2] + 3), (0, span)]:
        for n, c0, c_count in [(0, 0, 3), (1, 1, 2)]:
            xw = np.zeros(c_count * planes.shape[0] * win_len + 64, dtype=dtype)
            correlate._fill_window(xw, x, n, c0, c_count, planes, p0, win_len,
                                   np.array(pitch), np.array(pad), np.array(stride), False,
                                   runs, built)
            expected = _planes_window(x, n, c0, c_count, planes, p0, win_len, pitch, pad,
                                      stride)
            np.testing.assert_array_equal(xw[:expected.size], expected)
            assert not xw[expected.size:].any()
