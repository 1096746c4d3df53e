"""The CUDA backend against the CPU path, under the simulator or on a GPU.

Every comparison runs the same call with ``device="cpu"`` and on the GPU;
the shapes are tiny because the simulator runs each CUDA thread as a
Python thread. The autouse fixture in conftest.py makes launches small
(8 threads per block, at most 4 blocks), so several blocks run and each
thread owns several outputs.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import numba_deconv
from cuda_env import SIMULATING, kernels_can_run
from helpers import NATIVE_DTYPES, assert_matches_reference, random_array

if not kernels_can_run():
    # conftest.py marks every test here skipped anyway; skipping the module
    # keeps numba.cuda out of this process and the report to one line.
    pytest.skip("no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 to use Numba's "
                "CUDA simulator", allow_module_level=True)

cuda = pytest.importorskip("numba.cuda")

from numba_deconv import _dispatch  # noqa: E402
from numba_deconv.cuda import backend  # noqa: E402

# (id, x shape (batched, channels first), weight shape, keyword arguments,
#  with bias). Outputs stay below ~150 elements.
CASES = [
    ("1d_stride_pad", (2, 3, 5), (3, 2, 3), dict(stride=2, padding=1), True),
    ("1d_dilation_outpad", (1, 2, 4), (2, 2, 3),
     dict(stride=3, dilation=2, padding=(1,), output_padding=2), True),
    ("1d_dilation_gt_stride", (1, 2, 3), (2, 1, 3), dict(stride=2, dilation=3), False),
    ("2d_stride_pad", (1, 2, 3, 3), (2, 2, 3, 3), dict(stride=2, padding=1), True),
    ("2d_groups_asym_pairs", (2, 4, 2, 3), (4, 1, 2, 3),
     dict(groups=2, stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2)), True),
    ("2d_depthwise_same", (1, 3, 3, 2), (3, 1, 3, 3),
     dict(groups=3, stride=2, padding="same"), True),
    ("2d_output_size", (1, 2, 3, 3), (2, 1, 2, 2),
     dict(stride=3, output_size=(9, 10)), True),
    ("2d_valid_no_bias", (1, 1, 2, 2), (1, 1, 3, 3), dict(stride=2, padding="valid"), False),
    ("2d_unbatched", (2, 3, 3), (2, 1, 2, 2), dict(stride=2), True),
    ("3d_mixed", (1, 2, 2, 2, 2), (2, 1, 2, 2, 2),
     dict(stride=(1, 2, 2), dilation=(2, 1, 1), padding=(0, 1, 0)), True),
    ("3d_groups", (1, 4, 2, 1, 3), (4, 1, 1, 2, 2), dict(groups=2, stride=(1, 1, 2)), True),
    # 11 output channels a group: a thread's whole block of 8, then a block of 3.
    ("2d_groups_partial_channel_blocks", (2, 4, 3, 2), (4, 11, 2, 3),
     dict(groups=2, stride=2, padding=(0, 1)), True),
]
CASE_IDS = [c[0] for c in CASES]


def _make(rng, case, dtype, data_format="channels_first"):
    _, x_shape, w_shape, kwargs, with_bias = case
    x = random_array(rng, x_shape, dtype)
    if data_format == "channels_last":
        batched = len(x_shape) == len(w_shape)
        x = np.ascontiguousarray(np.moveaxis(x, 1 if batched else 0, -1))
    w = random_array(rng, w_shape, dtype)
    out_channels = w_shape[1] * kwargs.get("groups", 1)
    b = random_array(rng, (out_channels,), dtype) if with_bias else None
    return x, w, b, dict(kwargs, data_format=data_format)


def _host(value):
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


def _is_device(value) -> bool:
    return getattr(value, "__cuda_ndarray__", False) is True


def assert_close(actual, expected):
    """Same shape and dtype; values equal up to rounding of the dtype."""
    actual = _host(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    eps = np.finfo(expected.dtype).eps
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=64 * eps, atol=64 * eps * scale)


def _cpu(x, w, b, **kwargs):
    return numba_deconv.conv_transpose(x, w, b, device="cpu", **kwargs)


# --- values --------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", NATIVE_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_host_arrays_match_cpu(rng, case, dtype, data_format):
    """device='cuda' with NumPy input: copied in, computed, NumPy back."""
    x, w, b, kwargs = _make(rng, case, dtype, data_format)
    got = numba_deconv.conv_transpose(x, w, b, device="cuda", **kwargs)
    assert isinstance(got, np.ndarray)
    assert_close(got, _cpu(x, w, b, **kwargs))


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference(rng, case, data_format):
    """The oracle of the core tests agrees too (float64)."""
    x, w, b, kwargs = _make(rng, case, np.float64, data_format)
    got = numba_deconv.conv_transpose(x, w, b, device="cuda", **kwargs)
    assert_matches_reference(got, x, w, b, **kwargs)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128], ids=["float32", "complex128"])
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[9]], ids=lambda c: c[0])
def test_device_arrays_stay_on_device(rng, case, dtype, data_format):
    """Device arrays in: the result is a device array, same values."""
    x, w, b, kwargs = _make(rng, case, dtype, data_format)
    d_b = None if b is None else cuda.to_device(b)
    got = numba_deconv.conv_transpose(cuda.to_device(x), cuda.to_device(w), d_b,
                                      device="cuda", **kwargs)
    assert _is_device(got)
    assert_close(got, _cpu(x, w, b, **kwargs))


def test_auto_follows_device_arrays(rng):
    """device='auto' (the default) runs device arrays on the GPU."""
    assert _dispatch.select_device("auto", cuda.to_device(np.zeros(1))) == "cuda"
    x, w, b, kwargs = _make(rng, CASES[3], np.float64)
    got = numba_deconv.conv_transpose(cuda.to_device(x), w, b, **kwargs)
    assert _is_device(got)
    assert_close(got, _cpu(x, w, b, **kwargs))
    host = numba_deconv.conv_transpose(x, w, b, **kwargs)
    assert isinstance(host, np.ndarray)


@st.composite
def _calls(draw):
    """Random small calls: rank 1-3, any stride/dilation/padding pairs/
    output_padding, groups, batch 0-2, both formats, all four dtypes."""
    rank = draw(st.integers(1, 3))
    small = 3 if rank < 3 else 2
    groups = draw(st.integers(1, 2))
    c_in, c_out_g = groups * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    batch = draw(st.integers(0, 2))
    in_spatial = tuple(draw(st.integers(1, small)) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, small)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation))
    kwargs = dict(stride=stride, dilation=dilation, padding=padding,
                  output_padding=output_padding, groups=groups,
                  data_format=draw(st.sampled_from(["channels_first", "channels_last"])))
    x_shape = (batch, c_in) + in_spatial
    if kwargs["data_format"] == "channels_last":
        x_shape = (batch,) + in_spatial + (c_in,)
    return (x_shape, (c_in, c_out_g) + kernel, kwargs,
            draw(st.sampled_from(NATIVE_DTYPES)), draw(st.booleans()),
            draw(st.integers(0, 2**32 - 1)))


@given(_calls())
def test_random_calls_match_cpu(call):
    x_shape, w_shape, kwargs, dtype, with_bias, seed = call
    rng = np.random.default_rng(seed)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs["groups"],), dtype) if with_bias else None
    try:
        expected = _cpu(x, w, b, **kwargs)
    except ValueError:
        assume(False)  # padding that leaves no output: covered by the error tests
    got = numba_deconv.conv_transpose(x, w, b, device="cuda", **kwargs)
    assert_close(got, expected)


def test_one_block_per_output_chunk(rng):
    """Uncapped grid (no grid-stride steps) with 32 threads per block."""
    x, w, b, kwargs = _make(rng, CASES[9], np.float64)
    got = backend.conv_transpose_cuda(x, w, b, threads_per_block=32,
                                      max_blocks=2**31 - 1, **kwargs)
    assert_close(got, _cpu(x, w, b, **kwargs))


def test_tensorflow_worked_example():
    """docs/semantics.md, section 6.1: VALID, stride 2, 2x2 -> 5x5; the first
    element is 67."""
    x = np.array([[[[-67., -77.], [-117., -127.]]]])
    w = np.array([[[[-1., 2., -3.], [4., -5., 6.], [-7., 8., -9.]]]])
    y = numba_deconv.conv_transpose(x, w, stride=2, device="cuda")[0, 0]
    np.testing.assert_array_equal(y[0], [67, -134, 278, -154, 231])
    np.testing.assert_array_equal(y[-1], [819, -936, 1942, -1016, 1143])
    assert y[2, 2] == 1620


def test_pytorch_worked_example():
    """docs/semantics.md, section 6.2: ConvTranspose2d(8, 8, 4, 2, 1), weights 2,
    on 1..16 (one image, all eight channels: 512 outputs)."""
    x = np.tile(np.arange(1., 17.).reshape(1, 1, 4, 4), (1, 8, 1, 1))
    w = np.full((8, 8, 4, 4), 2.0)
    y = numba_deconv.conv_transpose(x, w, stride=2, padding=1, device="cuda")
    for channel in y[0]:
        np.testing.assert_array_equal(channel[0], [16, 48, 48, 80, 80, 112, 112, 64])
        np.testing.assert_array_equal(channel[-1], [208, 432, 432, 464, 464, 496, 496, 256])


# --- dtypes and conversions ---------------------------------------------

@pytest.mark.parametrize("x_dtype, w_dtype, expected", [
    (np.int32, np.int64, np.float64),
    (np.bool_, np.float32, np.float32),
    (np.float16, np.float16, np.float32),
    (np.float32, np.float64, np.float64),
    (np.float32, np.complex64, np.complex64),
    (np.float64, np.complex64, np.complex128),
])
@pytest.mark.parametrize("where", ["host", "device"])
def test_dtype_promotion_like_cpu(rng, x_dtype, w_dtype, expected, where):
    """Same working dtype as the CPU; device arrays are cast on the device."""
    x = random_array(rng, (1, 2, 3), x_dtype)
    w = random_array(rng, (2, 2, 2), w_dtype)
    cpu = _cpu(x, w, None, stride=2)
    assert cpu.dtype == expected
    if where == "device":
        x, w = cuda.to_device(x), cuda.to_device(w)
    got = numba_deconv.conv_transpose(x, w, stride=2, device="cuda")
    assert_close(got, cpu)


def _every_other_along_last(device_array):
    """A strided view of a device array, spelt without ``...``: numba-cuda's
    device arrays take no Ellipsis (the simulator's, NumPy's, do)."""
    return device_array[(slice(None),) * (device_array.ndim - 1) + (slice(None, None, 2),)]


def test_noncontiguous_device_input(rng):
    """A strided device view is copied to a contiguous one on the device."""
    x = random_array(rng, (1, 2, 3, 8), np.float32)
    w = random_array(rng, (2, 1, 2, 2), np.float32)
    d_x = _every_other_along_last(cuda.to_device(x))
    got = numba_deconv.conv_transpose(d_x, cuda.to_device(w), stride=2, device="cuda")
    assert_close(got, _cpu(x[..., ::2], w, None, stride=2))


def test_awkward_host_input(rng):
    """Nested lists, big-endian, Fortran order and read-only host arrays."""
    x = random_array(rng, (1, 2, 3, 3), np.float64)
    w = random_array(rng, (2, 1, 2, 2), np.float64)
    expected = _cpu(x, w, None, stride=2)
    x_be = x.astype(">f8")
    w_f = np.asfortranarray(w)
    w_f.flags.writeable = False
    got = numba_deconv.conv_transpose(x_be, w_f, stride=2, device="cuda")
    assert_close(got, expected)
    got = numba_deconv.conv_transpose(x.tolist(), w.tolist(), stride=2, device="cuda")
    assert_close(got, expected)


def test_nan_inf_propagate(rng):
    x = random_array(rng, (1, 1, 3, 3), np.float64)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 0, 2] = np.inf
    w = random_array(rng, (1, 1, 2, 2), np.float64)
    got = numba_deconv.conv_transpose(x, w, stride=2, device="cuda")
    expected = _cpu(x, w, None, stride=2)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12)


# --- out= and empty results ---------------------------------------------

def test_out_device_array_filled_and_returned(rng):
    x, w, b, kwargs = _make(rng, CASES[3], np.float32)
    expected = _cpu(x, w, b, **kwargs)
    out = cuda.device_array(expected.shape, dtype=np.float32)
    got = numba_deconv.conv_transpose(cuda.to_device(x), w, b, device="cuda", out=out,
                                      **kwargs)
    assert got is out
    assert_close(out, expected)


def test_out_noncontiguous_device_array(rng):
    x, w, b, kwargs = _make(rng, CASES[0], np.float64)
    expected = _cpu(x, w, b, **kwargs)
    big = cuda.device_array(expected.shape[:-1] + (2 * expected.shape[-1],),
                            dtype=np.float64)
    out = _every_other_along_last(big)
    got = numba_deconv.conv_transpose(x, w, b, device="cuda", out=out, **kwargs)
    assert got is out
    assert_close(big.copy_to_host()[..., ::2], expected)


def test_out_aliasing_input(rng):
    """out= the input itself (1x1 kernel keeps the shape): still right."""
    x = random_array(rng, (2, 3, 4), np.float64)
    w = random_array(rng, (3, 3, 1), np.float64)
    expected = _cpu(x, w, None)
    d_x = cuda.to_device(x)
    got = numba_deconv.conv_transpose(d_x, w, device="cuda", out=d_x)
    assert got is d_x
    assert_close(d_x, expected)


@pytest.mark.parametrize("where", ["host", "device"])
def test_out_numpy_array(rng, where):
    """A NumPy out= receives the result (from host or device input)."""
    x, w, b, kwargs = _make(rng, CASES[8], np.complex64, "channels_last")
    expected = _cpu(x, w, b, **kwargs)
    out = np.empty_like(expected)
    x_in = cuda.to_device(x) if where == "device" else x
    got = numba_deconv.conv_transpose(x_in, w, b, device="cuda", out=out, **kwargs)
    assert got is out
    assert_close(out, expected)
    strided = np.empty(expected.shape + (2,), expected.dtype)[..., 0]
    got = numba_deconv.conv_transpose(x_in, w, b, device="cuda", out=strided, **kwargs)
    assert got is strided
    assert_close(strided, expected)


@pytest.mark.parametrize("where", ["host", "device"])
def test_empty_batch(where):
    x = np.zeros((0, 2, 3), np.float32)
    w = np.ones((2, 3, 2), np.float32)
    x_in = cuda.to_device(x) if where == "device" else x
    got = numba_deconv.conv_transpose(x_in, w, stride=2, device="cuda")
    assert got.shape == (0, 3, 6)
    assert _is_device(got) == (where == "device")
    out = cuda.device_array((0, 3, 6), np.float32)
    assert numba_deconv.conv_transpose(x_in, w, stride=2, device="cuda", out=out) is out


def test_small_arrays_are_uploaded_once_per_context(monkeypatch):
    """The launches' zero bias, geometry tables and fold tables go up once:
    the same content in the same context is the same device array, a new
    context gets its own, and the store stays bounded."""
    contexts = [object()]
    monkeypatch.setattr(cuda, "current_context", lambda: contexts[-1])
    monkeypatch.setattr(backend, "_device_constants", type(backend._device_constants)())
    zeros = backend._on_device(cuda, np.zeros(3, np.float32))
    assert backend._on_device(cuda, np.zeros(3, np.float32)) is zeros
    assert backend._on_device(cuda, np.zeros(3, np.float64)) is not zeros
    assert backend._on_device(cuda, np.zeros(4, np.float32)) is not zeros
    table = backend._on_device(cuda, np.arange(5, dtype=np.int64))
    assert np.array_equal(table.copy_to_host(), np.arange(5))
    contexts.append(object())
    assert backend._on_device(cuda, np.zeros(3, np.float32)) is not zeros
    for i in range(2 * backend.DEVICE_CONSTANTS):
        backend._on_device(cuda, np.full(2, i, np.int64))
    assert len(backend._device_constants) == backend.DEVICE_CONSTANTS


def test_repeated_calls_with_and_without_bias(rng):
    """Calls that share a cached zero bias and geometry table, and a call
    with a bias between them, each get their own right answer."""
    x, w, b, kwargs = _make(rng, CASES[0], np.float32)
    d_x, d_w = cuda.to_device(x), cuda.to_device(w)
    first = numba_deconv.conv_transpose(d_x, d_w, **kwargs).copy_to_host()
    with_bias = numba_deconv.conv_transpose(d_x, d_w, b, **kwargs).copy_to_host()
    again = numba_deconv.conv_transpose(d_x, d_w, **kwargs).copy_to_host()
    assert_close(first, _cpu(x, w, None, **kwargs))
    assert_close(with_bias, _cpu(x, w, b, **kwargs))
    assert np.array_equal(first, again)


@pytest.mark.parametrize("op, w_shape, groups, specialisation", [
    ("conv_transpose", (4, 1, 3, 3), 4, "gather_single"),   # depthwise: one channel a group
    ("conv_transpose", (4, 2, 3, 3), 4, "gather"),
    ("conv_transpose", (4, 3, 3, 3), 1, "gather"),
    ("conv", (4, 1, 3, 3), 4, "conv_single"),
    ("conv", (8, 1, 3, 3), 4, "conv_gather"),   # 2 output channels a group
    ("conv", (11, 4, 3, 3), 1, "conv_gather"),  # a block of 8, then one of 3
])
def test_one_channel_groups_run_the_single_channel_kernel(rng, monkeypatch, op, w_shape,
                                                         groups, specialisation):
    """Groups of one output channel launch the kernel compiled for one
    channel a thread (the block's loops would run empty lanes); every other
    call the block kernel. Both agree with the CPU path."""
    from numba_deconv import _compiled

    c_in = w_shape[0] if op == "conv_transpose" else w_shape[1] * groups
    x = random_array(rng, (2, c_in, 3, 5), np.float32)
    w = random_array(rng, w_shape, np.float32)
    b = random_array(rng, (w_shape[0] if op == "conv" else w_shape[1] * groups,), np.float32)
    kwargs = dict(groups=groups, stride=2, padding=1)
    monkeypatch.setattr(_compiled, "_COMPILED", {})   # a fresh record
    function = getattr(numba_deconv, op)
    got = _host(function(x, w, b, device="cuda", **kwargs))
    assert_close(got, _host(function(x, w, b, device="cpu", **kwargs)))
    assert {key[-1] for key in _compiled.recorded() if key[0] == "cuda"} == {specialisation}


# --- determinism -----------------------------------------------------------

def test_bitwise_identical_across_runs_and_launches(rng):
    """One thread owns each output and sums its taps in a fixed order, so
    neither repetition nor the launch shape changes a single bit."""
    x, w, b, kwargs = _make(rng, CASES[4], np.float32)
    first = backend.conv_transpose_cuda(x, w, b, **kwargs).tobytes()
    for tpb, blocks in [(8, 4), (8, 4), (1, 1), (32, 64), (64, 2)]:
        again = backend.conv_transpose_cuda(x, w, b, threads_per_block=tpb,
                                            max_blocks=blocks, **kwargs)
        assert again.tobytes() == first


def test_launch_config():
    assert backend.launch_config(100, 8, 4) == (4, 8)
    assert backend.launch_config(100, 8, 1000) == (13, 8)
    assert backend.launch_config(0, 8, 4) == (1, 8)
    for bad in (0, 2000, 8.0, True):
        with pytest.raises(ValueError, match="threads_per_block"):
            backend.launch_config(10, bad, 4)
    with pytest.raises(ValueError, match="max_blocks"):
        backend.launch_config(10, 8, 0)


# --- errors: the same as the CPU path -----------------------------------

ERROR_CASES = [
    ("stride_zero", (1, 2, 3, 3), (2, 1, 2, 2), dict(stride=0)),
    ("bad_padding_string", (1, 2, 3, 3), (2, 1, 2, 2), dict(padding="full")),
    ("negative_padding", (1, 2, 3, 3), (2, 1, 2, 2), dict(padding=-1)),
    ("output_padding_too_big", (1, 2, 3, 3), (2, 1, 2, 2), dict(stride=2, output_padding=2)),
    ("groups_not_dividing", (1, 2, 3, 3), (2, 1, 2, 2), dict(groups=3)),
    ("channel_mismatch", (1, 3, 3, 3), (2, 1, 2, 2), {}),
    ("x_rank", (2, 3, 3), (2, 1, 2, 2, 2), {}),
    ("weight_rank", (1, 2, 3), (2, 1), {}),
    ("data_format", (1, 2, 3, 3), (2, 1, 2, 2), dict(data_format="NCHW")),
    ("padding_mode", (1, 2, 3, 3), (2, 1, 2, 2), dict(padding_mode="wrap")),
    ("output_size_unreachable", (1, 2, 3, 3), (2, 1, 2, 2), dict(stride=2, output_size=(9, 6))),
    ("no_output_left", (1, 2, 2, 2), (2, 1, 2, 2), dict(padding=2)),
    ("tuple_length", (1, 2, 3, 3), (2, 1, 2, 2), dict(dilation=(1, 2, 3))),
]


def _error_of(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return info.type, str(info.value)


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c[0])
def test_errors_match_cpu(case, where):
    _, x_shape, w_shape, kwargs = case
    x = np.ones(x_shape, np.float32)
    w = np.ones(w_shape, np.float32)
    expected = _error_of(lambda: _cpu(x, w, None, **kwargs))
    x_in, w_in = (cuda.to_device(x), cuda.to_device(w)) if where == "device" else (x, w)
    assert _error_of(lambda: numba_deconv.conv_transpose(
        x_in, w_in, device="cuda", **kwargs)) == expected


@pytest.mark.parametrize("where", ["host", "device"])
def test_bias_and_dtype_errors_match_cpu(where):
    x = np.ones((1, 2, 3), np.float32)
    w = np.ones((2, 1, 2), np.float32)
    bad_bias = np.ones(3, np.float32)
    to = cuda.to_device if where == "device" else (lambda a: a)
    expected = _error_of(lambda: _cpu(x, w, bad_bias))
    assert _error_of(lambda: numba_deconv.conv_transpose(
        to(x), to(w), to(bad_bias), device="cuda")) == expected
    strings = np.array([["a"] * 3] * 2)[None]
    expected = _error_of(lambda: _cpu(strings, w, None))
    assert _error_of(lambda: numba_deconv.conv_transpose(strings, to(w), device="cuda")) == expected
    expected = _error_of(lambda: _cpu(x, w, None, stride=1.5))
    assert _error_of(lambda: numba_deconv.conv_transpose(
        to(x), to(w), device="cuda", stride=1.5)) == expected


@pytest.mark.parametrize("where", ["host", "device"])
def test_out_errors_match_cpu(where):
    x = np.ones((1, 2, 3), np.float32)
    w = np.ones((2, 1, 2), np.float32)
    to = cuda.to_device if where == "device" else (lambda a: a)
    for bad in (np.empty((1, 1, 3), np.float32), np.empty((1, 1, 4), np.float64)):
        expected = _error_of(lambda: _cpu(x, w, None, out=bad))
        got = _error_of(lambda: numba_deconv.conv_transpose(
            x, w, device="cuda", out=to(bad)))
        assert got == expected
    with pytest.raises(TypeError, match="out must be a CUDA device array or a numpy.ndarray"):
        numba_deconv.conv_transpose(x, w, device="cuda", out=[[[0.0] * 4]])


def test_rank_4_is_a_clear_error():
    x = np.ones((1, 1, 2, 2, 2, 2))
    w = np.ones((1, 1, 1, 1, 1, 2))
    with pytest.raises(NotImplementedError, match=re.escape(
            "rank-4 transposed convolution has no CUDA kernel")) as info:
        numba_deconv.conv_transpose(x, w, device="cuda")
    assert "device='cpu'" in str(info.value)


# --- compiled variants -----------------------------------------------------

def test_cache_info_lists_cuda_variants(rng):
    x, w, b, kwargs = _make(rng, CASES[0], np.complex64, "channels_last")
    numba_deconv.conv_transpose(x, w, b, device="cuda", **kwargs)
    variants = {(v["device"], v["rank"], v["dtype"], v["layout"], v["strategy"])
                for v in numba_deconv.cache_info()}
    assert ("cuda", 1, "complex64", "channels_last", "gather") in variants


def test_precompile_cuda():
    info = numba_deconv.precompile(ranks=(2,), dtypes=("float64",), strategies=("gather",),
                                   layouts=("channels_first",), device="cuda")
    assert any(v["device"] == "cuda" and v["rank"] == 2 and v["dtype"] == "float64"
               for v in info)
    with pytest.raises(ValueError, match="strategies: 'columns'"):
        numba_deconv.precompile(strategies=("columns",), device="cuda")
    with pytest.raises(ValueError, match="not a CUDA kernel"):
        backend.compile_kernel("column_tiles", np.dtype("float64"))
    with pytest.raises(NotImplementedError, match="rank-4"):
        numba_deconv.precompile(ranks=(4,), device="cuda")


# --- other array libraries (need a real GPU and the library) ---------------

@pytest.mark.skipif(SIMULATING, reason="the simulator cannot run CuPy arrays")
def test_cupy_in_cupy_out(rng):
    cupy = pytest.importorskip("cupy")
    x, w, b, kwargs = _make(rng, CASES[3], np.float32)
    got = numba_deconv.conv_transpose(cupy.asarray(x), cupy.asarray(w), b, **kwargs)
    assert isinstance(got, cupy.ndarray)
    assert_close(cupy.asnumpy(got), _cpu(x, w, b, **kwargs))


@pytest.mark.skipif(SIMULATING, reason="the simulator cannot run PyTorch CUDA tensors")
def test_torch_cuda_tensor_in(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA device")
    x, w, b, kwargs = _make(rng, CASES[3], np.float32)
    got = numba_deconv.conv_transpose(torch.as_tensor(x, device="cuda"), w, b, **kwargs)
    assert _is_device(got)
    assert_close(got, _cpu(x, w, b, **kwargs))


# --- conv --------------------------------------------------------------------

CONV_CASES = [
    # x shape, weight shape (C_out, C_in/groups, *k), keyword arguments
    ((2, 3, 9), (4, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 6, 5), (2, 2, 3, 2), dict(stride=(2, 1), dilation=(1, 2), groups=2,
                                      padding=((1, 2), (0, 1)))),
    ((1, 2, 4, 3, 5), (3, 2, 2, 2, 3), dict(stride=2, padding="same")),
]


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_CASES)
def test_conv_matches_cpu(x_shape, w_shape, kwargs, dtype, data_format, padding_mode, rng):
    """The conv kernel reads the padded input in every mode and layout, as
    the CPU path (checked against PyTorch and the oracle) computes it."""
    x = random_array(rng, x_shape, dtype)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[0],), dtype)
    kwargs = dict(kwargs, data_format=data_format, padding_mode=padding_mode)
    expected = numba_deconv.conv(x, w, b, device="cpu", **kwargs)
    assert_close(numba_deconv.conv(x, w, b, device="cuda", **kwargs), expected)
    got = numba_deconv.conv(cuda.to_device(x), cuda.to_device(w), b, **kwargs)
    assert _is_device(got)
    assert_close(got, expected)


# conv's cases with the padding spelled out, so that conv_transpose with
# output_size is conv's exact adjoint.
ADJOINT_CASES = CONV_CASES[:2] + [
    ((1, 2, 4, 3, 5), (3, 2, 2, 2, 3), dict(stride=2, padding=((1, 0), (0, 1), (1, 1)))),
]


@pytest.mark.parametrize("padding_mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", ADJOINT_CASES)
def test_conv_transpose_padding_modes_match_cpu(x_shape, w_shape, kwargs, dtype,
                                                data_format, padding_mode, rng):
    """conv_transpose with a padding mode: the scatter over the padded
    extent, folded back on the GPU, as the CPU path computes it."""
    x = random_array(rng, x_shape, dtype)   # only its shape: conv's input, our output
    y_shape = numba_deconv.conv(x, random_array(rng, w_shape, dtype), **kwargs).shape
    y = random_array(rng, y_shape, dtype)
    if data_format == "channels_last":
        y = np.ascontiguousarray(np.moveaxis(y, 1, -1))
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (x_shape[1],), dtype)
    kwargs = dict(kwargs, output_size=x_shape[2:], data_format=data_format,
                  padding_mode=padding_mode)
    expected = numba_deconv.conv_transpose(y, w, b, device="cpu", **kwargs)
    assert_close(numba_deconv.conv_transpose(y, w, b, device="cuda", **kwargs), expected)
    got = numba_deconv.conv_transpose(cuda.to_device(y), cuda.to_device(w), b, **kwargs)
    assert _is_device(got)
    assert_close(got, expected)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", ADJOINT_CASES)
def test_conv_transpose_is_conv_adjoint_on_the_gpu(x_shape, w_shape, kwargs, padding_mode,
                                                   rng):
    """<conv(x), y> = <x, conv_transpose(y)> with both run on the GPU, in
    every padding mode: the fold is the padding's exact adjoint."""
    x = random_array(rng, x_shape, np.float64)
    w = random_array(rng, w_shape, np.float64)
    kwargs = dict(kwargs, padding_mode=padding_mode)
    conv_x = numba_deconv.conv(x, w, device="cuda", **kwargs)
    y = random_array(rng, conv_x.shape, np.float64)
    back = numba_deconv.conv_transpose(y, w, device="cuda", output_size=x_shape[2:], **kwargs)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(conv_x, y), np.vdot(x, back), rtol=1e-12)


def test_bench_device_cuda(tmp_path, capsys):
    """``bench --device cuda`` times ours on the GPU and, where PyTorch sees
    the GPU, checks ours against cuDNN's exact float32 result."""
    from numba_deconv import bench
    from numba_deconv.bench.gpu import time_on_gpu, torch_with_cuda

    pairs = bench.select_cases(bench.load_cases(), ["tiny_seed"], ["float64"])
    for op in ("conv_transpose", "conv"):
        (row,) = time_on_gpu(pairs, op=op, min_time=0)
        assert row.case == "tiny_seed" and row.ours > 0
        if torch_with_cuda() is not None:
            assert row.error < 1e-12 and row.cudnn > 0
    path = tmp_path / "gpu.json"
    assert bench.main(["--device", "cuda", "--case", "tiny_seed", "--min-time", "0",
                       "--no-gemm", "--quiet", "--json", str(path)]) == 0
    assert "| tiny_seed | float32 |" in capsys.readouterr().out
    assert json.loads(path.read_text())["rows"][0]["case"] == "tiny_seed"
