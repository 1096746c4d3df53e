"""Plans: the same bits as the functions, the exact adjoint, weights laid out once."""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv as nd
from helpers import random_array
from numba_deconv.cpu import driver

# id, forward, input shape, weight shape, kwargs, dtype
CASES = [
    ("ct-tiles", "conv_transpose", (2, 16, 9, 8), (16, 8, 3, 3),
     dict(stride=2, padding=1, output_padding=1), np.float32),
    ("ct-rows-1d", "conv_transpose", (1, 2, 40), (2, 3, 4), dict(stride=3, dilation=2),
     np.float64),
    ("ct-columns", "conv_transpose", (2, 64, 4, 4), (64, 64, 2, 2), dict(stride=2),
     np.float32),
    ("ct-complex-reflect", "conv_transpose", (2, 3, 7, 6), (3, 2, 3, 3),
     dict(stride=2, padding=1, padding_mode="reflect"), np.complex128),
    ("ct-4d", "conv_transpose", (1, 2, 3, 3, 3, 3), (2, 2, 2, 1, 2, 2), dict(stride=2),
     np.float64),
    ("ct-channels-last", "conv_transpose", (2, 6, 5, 8), (8, 4, 2, 3),
     dict(stride=(1, 2), data_format="channels_last"), np.float32),
    ("conv-tiles", "conv", (2, 8, 17, 15), (16, 8, 3, 3), dict(stride=2, padding=1),
     np.float32),
    ("conv-depthwise-circular", "conv", (2, 4, 12, 11), (8, 1, 3, 3),
     dict(stride=2, padding=1, groups=4, padding_mode="circular"), np.float64),
    ("conv-complex-3d", "conv", (1, 2, 6, 5, 7), (3, 2, 2, 3, 2), dict(stride=(1, 2, 2)),
     np.complex64),
]


def _setup(case, rng, bias=True):
    _, forward, x_shape, w_shape, kwargs, dtype = case
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    channels = w_shape[0] if forward == "conv" else w_shape[1] * kwargs.get("groups", 1)
    b = random_array(rng, (channels,), dtype) if bias else None
    return forward, x, w, b, kwargs


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_plan_computes_the_functions_bits(case, rng):
    forward, x, w, b, kwargs = _setup(case, rng)
    p = nd.plan(w, x.shape, bias=b, forward=forward, **kwargs)
    expected = getattr(nd, forward)(x, w, b, **kwargs)
    assert p.output_shape == expected.shape and p.dtype == expected.dtype
    for _ in range(2):
        np.testing.assert_array_equal(p(x), expected)
    out = np.empty_like(expected)
    assert p(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_plans_adjoint_is_exact(case, rng):
    forward, x, w, _, kwargs = _setup(case, rng, bias=False)
    p = nd.plan(w, x.shape, forward=forward, **kwargs)
    y = random_array(rng, p.output_shape, p.dtype)
    lhs, rhs = np.vdot(p(x), y), np.vdot(x, p.adjoint(y))
    scale = np.linalg.norm(p(x)) * np.linalg.norm(y)
    assert abs(lhs - rhs) <= 1e3 * np.finfo(p.dtype).eps * scale
    out = np.empty(p.input_shape, p.dtype)
    np.testing.assert_array_equal(p.adjoint(y, out=out), p.adjoint(y))


@pytest.mark.parametrize("kernel, case", [("phase_tiles", CASES[0]), ("column_tiles", CASES[2])])
def test_the_weights_are_laid_out_once(kernel, case, rng, monkeypatch):
    calls = []
    real = driver.PREPARERS[kernel]
    monkeypatch.setitem(driver.PREPARERS, kernel,
                        lambda w, launch: calls.append(1) or real(w, launch))
    forward, x, w, b, kwargs = _setup(case, rng)
    p = nd.plan(w, x.shape, bias=b, **kwargs)
    for _ in range(3):
        p(x)
    assert len(calls) == 1


def test_a_plan_keeps_its_own_weights(rng):
    forward, x, w, b, kwargs = _setup(CASES[0], rng)
    p = nd.plan(w, x.shape, bias=b, **kwargs)
    expected = p(x)
    w[...] = 0
    np.testing.assert_array_equal(p(x), expected)


def test_plan_errors(rng):
    w = np.ones((2, 3, 3))
    p = nd.plan(w, (1, 2, 5), stride=2)
    with pytest.raises(ValueError, match=r"x has shape \(1, 2, 6\); this plan takes \(1, 2, 5\)"):
        p(np.ones((1, 2, 6)))
    with pytest.raises(ValueError, match="y has shape"):
        p.adjoint(np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="forward='deconv'"):
        nd.plan(w, (1, 2, 5), forward="deconv")
    with pytest.raises(TypeError, match="'output_padding' is not an argument of conv"):
        nd.plan(w, (1, 2, 5), forward="conv", output_padding=1)
    with pytest.raises(TypeError, match="imaginary part"):
        nd.plan(w + 1j, (1, 2, 5), np.float64)
    with pytest.raises(ValueError, match="stride"):
        nd.plan(w, (1, 2, 5), stride=0)
    with pytest.raises(ValueError, match="out must be"):
        p.adjoint(np.ones(p.output_shape), out=np.ones((1, 2, 4)))
    assert repr(p) == "Plan(conv_transpose, (1, 2, 5) -> (1, 3, 11), float64)"


# Tiny calls that run the serial row kernel: input shape, weight shape, kwargs.
TINY = [
    ((1, 1, 2, 2), (1, 1, 3, 3), dict(stride=2)),  # TensorFlow's worked example
    ((1, 2, 2), (1, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),  # unbatched
    ((2, 2, 5), (2, 3, 4), dict(stride=3, dilation=2)),
    ((1, 2, 2, 3, 2), (2, 2, 2, 2, 2), dict(stride=(1, 2, 2), groups=2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", TINY)
def test_tiny_calls_skip_the_layers_with_the_same_bits(x_shape, w_shape, kwargs, dtype, rng,
                                                       monkeypatch):
    """Once its kernel is compiled, a plan calls the serial row kernel
    directly for kernel-ready inputs: the same bits as the function; every
    other input goes the checked way."""
    from numba_deconv import api

    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    for bias in (b, None):
        p = nd.plan(w, x_shape, bias=bias, **kwargs)
        expected = nd.conv_transpose(x, w, bias, **kwargs)
        np.testing.assert_array_equal(p(x), expected)  # the checked way; compiles
        assert callable(p._call.serial)
        with monkeypatch.context() as patched:
            patched.setattr(api, "apply_conv_transpose", _refuse)
            for _ in range(2):
                result = p(x)
                assert result.shape == expected.shape and result.dtype == expected.dtype
                assert result.tobytes() == expected.tobytes()
            # Not kernel-ready, or an out: the checked way.
            read_only = x.copy()
            read_only.flags.writeable = False
            strided = np.repeat(x, 2, axis=-1)[..., ::2]
            swapped = x.astype(x.dtype.newbyteorder())
            other = x.astype(np.float64 if dtype == np.float32 else np.float32)
            for unready in (read_only, strided, swapped, other, x.tolist()):
                with pytest.raises(_Refused):
                    p(unready)
            # A kernel-ready out is written as it is; any other, the checked way.
            out = np.full_like(expected, np.nan)
            assert p(x, out=out) is out and out.tobytes() == expected.tobytes()
            for unready_out in _unready_outs(expected):
                with pytest.raises(_Refused):
                    p(x, out=unready_out)
        np.testing.assert_array_equal(p(read_only), expected)
        np.testing.assert_array_equal(p(strided), expected)
        strided_out = _unready_outs(expected)[0]
        assert p(x, out=strided_out) is strided_out
        np.testing.assert_array_equal(strided_out, expected)


def _unready_outs(result):
    """``out=`` arrays of ``result``'s shape that a kernel cannot write as
    they are: strided (which the checked way fills), then byte-swapped, of
    another dtype, of another shape, read-only (which it refuses)."""
    strided = np.repeat(np.zeros_like(result), 2, axis=-1)[..., ::2]
    swapped = np.zeros_like(result, dtype=result.dtype.newbyteorder())
    other = np.zeros(result.shape, np.float64 if result.dtype == np.float32 else np.float32)
    read_only = np.zeros_like(result)
    read_only.flags.writeable = False
    return [strided, swapped, other, np.zeros(result.shape + (1,), result.dtype), read_only]


def test_tiny_calls_from_many_threads(rng):
    """The direct calls share no state: each thread's result is its own."""
    from concurrent.futures import ThreadPoolExecutor

    w = random_array(rng, (2, 3, 3, 3), np.float64)
    p = nd.plan(w, (1, 2, 3, 3), stride=2)
    inputs = [random_array(rng, (1, 2, 3, 3), np.float64) for _ in range(64)]
    expected = [nd.conv_transpose(x, w, stride=2) for x in inputs]
    p(inputs[0])
    assert callable(p._call.serial)
    with ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            results = list(pool.map(p, inputs))
            for result, want in zip(results, expected):
                np.testing.assert_array_equal(result, want)


def test_bigger_or_other_calls_keep_the_checked_way(rng):
    """Only the serial row kernel is called directly: not the phase tiles,
    channels first or last, nor a padding mode's call."""
    for case in (CASES[0], CASES[3]):
        forward, x, w, b, kwargs = _setup(case, rng)
        for layout in ("channels_first", "channels_last"):
            if layout == "channels_last":
                x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
            p = nd.plan(w, x.shape, bias=b, forward=forward, data_format=layout, **kwargs)
            p(x)
            assert p._call.serial is False


@pytest.mark.parametrize("x_shape, w_shape, kwargs", TINY)
def test_tiny_function_calls_skip_the_layers_with_the_same_bits(x_shape, w_shape, kwargs, rng,
                                                                monkeypatch):
    """The function itself, once a call shape's serial row kernel is
    compiled, calls it directly for kernel-ready arrays, ``out`` too where
    it is one and overlaps no input."""
    from numba_deconv import api

    x = random_array(rng, x_shape, np.float32)
    w = random_array(rng, w_shape, np.float32)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), np.float32)
    expected = [nd.conv_transpose(x, w, bias, **kwargs) for bias in (b, None)]
    with monkeypatch.context() as patched:
        patched.setattr(api, "_prepare", _refuse)
        for bias, want in zip((b, None), expected):
            assert nd.conv_transpose(x, w, bias, **kwargs).tobytes() == want.tobytes()
        with pytest.raises(_Refused):
            nd.conv_transpose(x, w.astype(np.float64), b, **kwargs)
        with pytest.raises(_Refused):
            nd.conv_transpose(x, w, b.astype(np.float64), **kwargs)
        out = np.full_like(expected[0], np.nan)
        assert nd.conv_transpose(x, w, b, out=out, **kwargs) is out
        assert out.tobytes() == expected[0].tobytes()
        for unready_out in _unready_outs(expected[0]):
            with pytest.raises(_Refused):
                nd.conv_transpose(x, w, b, out=unready_out, **kwargs)
    # An out that shares memory with an input, the checked way: still the sum.
    room = np.zeros(x.size + expected[1].size, np.float32)
    x_in_room = room[:x.size].reshape(x.shape)
    x_in_room[...] = x
    out = room[x.size - 1:x.size - 1 + expected[1].size].reshape(expected[1].shape)
    np.testing.assert_array_equal(nd.conv_transpose(x_in_room, w, out=out, **kwargs),
                                  expected[1])


@pytest.mark.parametrize("x_shape, w_shape, kwargs", TINY)
def test_tiny_conv_calls_skip_the_layers_with_the_same_bits(x_shape, w_shape, kwargs, rng,
                                                            monkeypatch):
    """conv as conv_transpose above: once a tiny call shape's serial plane
    kernel is compiled, the function and plans of ``conv`` (and plans'
    adjoints of ``conv_transpose``) call it directly for kernel-ready
    arrays, ``out`` too where it can be written as it is; the same bits."""
    from numba_deconv import api

    kwargs = {k: v for k, v in kwargs.items() if k != "output_padding"}
    # conv's input is the transposed convolution's output: (N, C_out, *O)
    y = nd.conv_transpose(random_array(rng, x_shape, np.float32),
                          random_array(rng, w_shape, np.float32), **kwargs)
    w = random_array(rng, w_shape, np.float32)   # conv's (C_out, C_in/groups, *k)
    b = random_array(rng, (w_shape[0],), np.float32)
    expected = [nd.conv(y, w, bias, **kwargs) for bias in (b, None)]  # compiles
    p = nd.plan(w, y.shape, bias=b, forward="conv", **kwargs)
    p(y)
    with monkeypatch.context() as patched:
        patched.setattr(api, "_prepare", _refuse)
        for bias, want in zip((b, None), expected):
            assert nd.conv(y, w, bias, **kwargs).tobytes() == want.tobytes()
        assert p(y).tobytes() == expected[0].tobytes()
        with pytest.raises(_Refused):
            nd.conv(y, w.astype(np.float64), b, **kwargs)
        with pytest.raises(_Refused):
            nd.conv(y.astype(np.float64), w, b, **kwargs)
        out = np.full_like(expected[0], np.nan)
        assert nd.conv(y, w, b, out=out, **kwargs) is out
        assert out.tobytes() == expected[0].tobytes()
        for unready_out in _unready_outs(expected[0]):
            with pytest.raises(_Refused):
                nd.conv(y, w, b, out=unready_out, **kwargs)
    assert callable(api._dispatch.conv_call(
        y.shape, y.dtype, w.shape, w.dtype, (b.shape, b.dtype),
        tuple(kwargs.get(k, d) for k, d in zip(api._dispatch._CONV_ARG_NAMES,
                                                (1, 0, 1, 1, "zeros", "channels_first")))
    ).serial)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((1, 2, 2, 1), (1, 1, 3, 3), dict(stride=2)),    # the worked example, NHWC
    ((2, 5, 1), (1, 1, 4), dict(stride=3, dilation=2)),
    ((1, 1, 1, 2), (2, 1, 2, 2), {}),                 # one output channel
    ((2, 5, 1), (1, 3, 4), dict(stride=2)),           # 3 channels at 12 positions
    ((1, 2, 2, 2), (2, 1, 3, 3), dict(stride=2)),     # 2 channels at 4 positions
    ((2, 3, 2, 4, 4), (4, 3, 2, 2, 2), dict(stride=(1, 2, 2), padding=1, groups=2)),
    ((5, 3), (3, 2, 2), dict(stride=2)),                # unbatched
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_channels_last_calls_skip_the_layers_with_the_same_bits(
        x_shape, w_shape, kwargs, dtype, rng, monkeypatch):
    """Tiny channels-last calls go straight to the serial row kernel too:
    as they lie where one channel (or one position) lays them out as
    channels first, else through rows_tiny_last's transposes; the same bits
    as the checked way, through a plan and through the function, ``out``
    included."""
    from numba_deconv import api

    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    first = 1 if len(x_shape) == len(w_shape) else 0  # the channels' axis, channels first
    expected = np.ascontiguousarray(
        np.moveaxis(nd.conv_transpose(np.moveaxis(x, -1, first), w, b, **kwargs), first, -1))
    p = nd.plan(w, x_shape, bias=b, data_format="channels_last", **kwargs)
    np.testing.assert_array_equal(p(x), expected)  # the checked way; compiles
    assert callable(p._call.serial)
    with monkeypatch.context() as patched:
        patched.setattr(api, "apply_conv_transpose", _refuse)
        for _ in range(2):
            result = p(x)
            assert result.shape == expected.shape and result.tobytes() == expected.tobytes()
        out = np.full(expected.shape, np.nan, dtype)
        assert p(x, out=out) is out and out.tobytes() == expected.tobytes()
    with monkeypatch.context() as patched:
        patched.setattr(api, "_prepare", _refuse)
        result = nd.conv_transpose(x, w, b, data_format="channels_last", **kwargs)
        assert result.tobytes() == expected.tobytes()
        out = np.full(expected.shape, np.nan, dtype)
        assert nd.conv_transpose(x, w, b, out=out, data_format="channels_last",
                                 **kwargs) is out
        assert out.tobytes() == expected.tobytes()


class _Refused(Exception):
    pass


def _refuse(*args, **kwargs):
    raise _Refused
