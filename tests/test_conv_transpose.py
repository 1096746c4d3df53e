"""numba_deconv.conv_transpose against the scatter-definition oracle.

Every test states the configuration it covers and compares with
``reference.reference`` (see reference.py), with tolerances from
``helpers.assert_matches_reference``. Shapes are small: the kernels compile
once per variant and that, not arithmetic, is what these tests spend.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from numba_deconv import conv_transpose
from helpers import (assert_matches_reference, assert_same_nonfinite,
                     compute_dtype, random_array)
from reference import explicit_pads, reference, to_channels_last


def make(rng, *, rank, n=2, c_in=2, c_out_g=3, groups=1, size=4, k=3,
         bias=True, dtype=np.float64):
    """Random x (N, C_in, *spatial), weight (C_in, C_out_g, *k), bias."""
    size = (size,) * rank if np.isscalar(size) else tuple(size)
    k = (k,) * rank if np.isscalar(k) else tuple(k)
    x = random_array(rng, (n, c_in) + size, dtype)
    w = random_array(rng, (c_in, c_out_g) + k, dtype)
    b = random_array(rng, (c_out_g * groups,), dtype) if bias else None
    return x, w, b


def run_and_check(x, w, b=None, **kwargs):
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    return y


# --- geometry: rank x stride x dilation x padding --------------------------

@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_rank_stride_dilation(rng, rank, stride, dilation):
    size = 3 if rank < 4 else 2
    x, w, b = make(rng, rank=rank, size=size, k=2 if rank == 4 else 3)
    run_and_check(x, w, b, stride=stride, dilation=dilation, padding=1)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_per_dim_stride_dilation(rng, rank):
    """stride/dilation given per dim, all different."""
    stride = tuple(range(1, rank + 1))
    dilation = tuple(range(rank, 0, -1))
    x, w, b = make(rng, rank=rank, size=(3, 2, 2, 2)[:rank],
                   k=(3, 2, 2, 1)[:rank])
    run_and_check(x, w, b, stride=stride, dilation=dilation)
    run_and_check(x, w, b, stride=list(stride), dilation=list(dilation))


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_rank_with_kernel_larger_than_input(rng, rank):
    x, w, b = make(rng, rank=rank, size=1, k=(4, 3, 2, 2)[:rank][::-1])
    run_and_check(x, w, b, stride=2)


@pytest.mark.parametrize("padding", [((0, 1), (1, 0), (2, 0), (0, 0)), "same"],
                         ids=["pairs", "same"])
def test_rank_4_general_path(rng, padding):
    """Rank 4 (the general path) with asymmetric pads, per-dim strides,
    dilations, output sizes, groups and channels_last."""
    x, w, b = make(rng, rank=4, n=2, c_in=4, c_out_g=1, groups=2,
                   size=(2, 3, 2, 2), k=(2, 2, 1, 3))
    kwargs = dict(stride=(2, 1, 3, 1), dilation=(1, 2, 1, 2), padding=padding,
                  groups=2)
    run_and_check(x, w, b, **kwargs)
    if padding != "same":
        run_and_check(x, w, b, output_padding=(1, 1, 2, 0), **kwargs)
    y = run_and_check(np.ascontiguousarray(to_channels_last(x)), w, b,
                      data_format="channels_last", **kwargs)
    assert y.shape[-1] == 2


def test_numpy_integer_arguments(rng):
    """NumPy integer scalars are ints: stride, padding, dilation, groups,
    output_padding and output_size may be np.int64 and friends."""
    x, w, b = make(rng, rank=2, c_in=4, c_out_g=2, groups=2)
    i = np.int64
    kwargs = dict(stride=(i(2), np.int32(3)), padding=i(1), dilation=i(1),
                  groups=i(2), output_padding=(np.uint8(1), i(0)))
    run_and_check(x, w, b, **kwargs)
    kwargs.pop("output_padding")
    run_and_check(x, w, b, output_size=np.array([8, 10]), **kwargs)


def test_rank_5(rng):
    """Any rank n >= 1 works (the general path)."""
    x, w, b = make(rng, rank=5, n=1, c_in=2, c_out_g=1, size=2, k=2)
    run_and_check(x, w, b, stride=(1, 2, 1, 2, 1), padding=(0, 1, 0, 0, 1))


def test_kernel_size_one_stride_one_is_channel_mixing(rng):
    x, w, b = make(rng, rank=2, c_in=3, c_out_g=4, k=1)
    y = run_and_check(x, w, b)
    np.testing.assert_allclose(
        y, np.einsum("nchw,cd->ndhw", x, w[:, :, 0, 0]) + b[:, None, None])


# --- padding forms ----------------------------------------------------------

PADDINGS_2D = [
    0,
    1,
    2,
    (1, 0),
    [0, 2],
    ((1, 0), (0, 2)),
    ((0, 3), (2, 1)),
    [[2, 2], [1, 1]],
    (1, (0, 2)),
    "valid",
    "same",
]


@pytest.mark.parametrize("padding", PADDINGS_2D, ids=repr)
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (3, 2), (1, 2)])
def test_padding_forms_2d(rng, padding, stride, dilation):
    x, w, b = make(rng, rank=2, size=(4, 3), k=(3, 4))
    run_and_check(x, w, b, padding=padding, stride=stride, dilation=dilation)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("padding", ["pairs", "ints", "same", "valid"])
def test_padding_forms_other_ranks(rng, rank, padding):
    if padding == "pairs":
        padding = ((0, 1), (2, 0), (1, 1))[:rank]
    elif padding == "ints":
        padding = (1, 0, 2)[:rank]
    x, w, b = make(rng, rank=rank, size=3, k=3)
    run_and_check(x, w, b, padding=padding, stride=2)


@pytest.mark.parametrize("k,s,d", [
    (1, 1, 1), (1, 2, 1), (1, 3, 1),      # total = 0, output_padding implied
    (2, 1, 1), (2, 2, 1), (2, 3, 1),
    (3, 1, 1), (3, 2, 1), (3, 3, 1),
    (4, 2, 1), (5, 2, 1), (4, 3, 1),      # odd totals: asymmetric pads
    (3, 2, 2), (2, 3, 2), (3, 1, 3), (2, 4, 3),
])
def test_same_padding_output_is_input_times_stride(rng, k, s, d):
    x, w, b = make(rng, rank=1, size=5, k=k)
    y = run_and_check(x, w, b, padding="same", stride=s, dilation=d)
    assert y.shape[-1] == 5 * s
    # The pads are exactly total // 2 before and the rest after.
    total = max(d * (k - 1) + 1 - s, 0)
    p = explicit_pads((5,), (k,), stride=s, dilation=d, padding="same")
    assert p["pad_before"] == (total // 2,)
    assert p["pad_after"] == (total - total // 2,)


def test_same_padding_2d_per_dim(rng):
    x, w, b = make(rng, rank=2, size=(3, 4), k=(4, 3))
    y = run_and_check(x, w, b, padding="same", stride=(2, 3), dilation=(1, 2))
    assert y.shape[2:] == (6, 12)


def test_padding_equal_to_full_extent_leaves_one(rng):
    # (I-1)*s + d*(k-1) + 1 = 2*2 + 2 + 1 = 7; pads 3+3 leave 1.
    x, w, b = make(rng, rank=1, size=3, k=3)
    y = run_and_check(x, w, b, stride=2, padding=((3, 3),))
    assert y.shape[-1] == 1


# --- output_padding / output_size -------------------------------------------

@pytest.mark.parametrize("s,d", [(2, 1), (3, 1), (1, 2), (1, 3), (2, 3), (3, 2)])
def test_every_output_padding(rng, s, d):
    """0 .. max(s, d) - 1, including output_padding >= stride when the
    dilation is larger (the extra outputs then still receive taps)."""
    x, w, b = make(rng, rank=1, size=3, k=3)
    for op in range(max(s, d)):
        y = run_and_check(x, w, b, stride=s, dilation=d, padding=1,
                          output_padding=op)
        assert y.shape[-1] == 2 * s - 2 + d * 2 + 1 + op


def test_output_padding_larger_than_pad_after(rng):
    """Extra outputs past the full scatter extent are zero plus bias."""
    x, w, b = make(rng, rank=1, size=2, k=1)
    y = run_and_check(x, w, b, stride=3, output_padding=2)
    assert y.shape == (2, 3, 6)
    # Taps reach outputs 0 and 3 only; the rest is exactly the bias.
    for o in (1, 2, 4, 5):
        np.testing.assert_array_equal(y[..., o], np.broadcast_to(b, (2, 3)))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_output_padding_per_dim(rng, rank):
    x, w, b = make(rng, rank=rank, size=3, k=2)
    op = (1, 0, 2)[:rank]
    run_and_check(x, w, b, stride=3, padding=1, output_padding=op)


@pytest.mark.parametrize("padding", [0, 1, ((0, 2), (1, 0)), "valid", "same"],
                         ids=repr)
def test_every_reachable_output_size(rng, padding):
    x, w, b = make(rng, rank=2, size=(3, 2), k=(3, 2))
    s, d = (3, 2), (1, 2)
    p = explicit_pads((3, 2), (3, 2), stride=s, dilation=d, padding=padding)
    # The smallest reachable size ("same" implies an output_padding).
    base = tuple(o - op for o, op in zip(p["out_spatial"], p["output_padding"]))
    for extra in itertools.product(range(3), range(2)):
        size = tuple(bv + e for bv, e in zip(base, extra))
        y = run_and_check(x, w, b, stride=s, dilation=d, padding=padding,
                          output_size=size)
        assert y.shape[2:] == size


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("batched", [True, False])
def test_output_size_full_shape(rng, data_format, batched):
    x, w, b = make(rng, rank=2, size=(3, 3), k=3, n=2)
    spatial = (8, 7)   # base (3-1)*2 + 3 = 7; reachable 7..8
    if data_format == "channels_last":
        x = to_channels_last(x)
        full = (2,) + spatial + (3,)
    else:
        full = (2, 3) + spatial
    if not batched:
        x, full = x[0], full[1:]
    for size in (full, list(full), spatial):
        y = run_and_check(x, w, b, stride=2, output_size=size,
                          data_format=data_format)
        assert y.shape == tuple(full)


@pytest.mark.parametrize("rank", [1, 3, 4])
def test_output_size_other_ranks(rng, rank):
    x, w, b = make(rng, rank=rank, size=2, k=2)
    # base per dim (2-1)*2 + 2 = 4; reachable 4..5
    size = (5, 4, 5, 4)[:rank]
    y = run_and_check(x, w, b, stride=2, output_size=size)
    assert y.shape[2:] == size


# --- groups and bias --------------------------------------------------------

@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("c_in,c_out_g,groups", [
    (4, 3, 1), (4, 3, 2), (6, 1, 3),
    (4, 1, 4),          # depthwise
    (3, 2, 3),          # depthwise with channel multiplier 2
])
def test_groups(rng, rank, c_in, c_out_g, groups):
    x, w, b = make(rng, rank=rank, c_in=c_in, c_out_g=c_out_g, groups=groups,
                   size=3, k=2)
    y = run_and_check(x, w, b, groups=groups, stride=2, padding=(1,) * rank)
    assert y.shape[1] == c_out_g * groups


def test_groups_are_independent(rng):
    """Each output group only sees its own input channels: a group-g output
    equals the ungrouped transposed conv of group g's slices."""
    x, w, b = make(rng, rank=2, c_in=4, c_out_g=2, groups=2, size=3, k=3)
    y = conv_transpose(x, w, b, groups=2, stride=2)
    for g in range(2):
        yg = conv_transpose(x[:, 2 * g:2 * g + 2], w[2 * g:2 * g + 2],
                            b[2 * g:2 * g + 2], stride=2)
        np.testing.assert_allclose(y[:, 2 * g:2 * g + 2], yg, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("groups", [1, 2])
def test_bias(rng, rank, groups):
    x, w, b = make(rng, rank=rank, c_in=2, c_out_g=2, groups=groups, size=2,
                   k=2)
    y = run_and_check(x, w, b, groups=groups, stride=2)
    y0 = run_and_check(x, w, None, groups=groups, stride=2)
    np.testing.assert_allclose(y - y0, np.broadcast_to(
        b.reshape((1, -1) + (1,) * rank), y.shape), rtol=1e-12, atol=1e-12)


def test_bias_as_list(rng):
    x, w, b = make(rng, rank=1)
    y = conv_transpose(x, w, list(b))
    np.testing.assert_allclose(y, conv_transpose(x, w, b), rtol=0, atol=0)


# --- many channels (the BLAS/GEMM strategy) ---------------------------------

@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_channels(rng, rank, groups, dtype):
    x, w, b = make(rng, rank=rank, n=2, c_in=16 * groups, c_out_g=8,
                   groups=groups, size=(5, 4, 3)[:rank], k=(3, 2, 3)[:rank],
                   dtype=dtype)
    run_and_check(x, w, b, groups=groups, stride=(2, 1, 3)[:rank],
                  padding=(1, 0, (0, 2))[:rank], dilation=(1, 2, 1)[:rank],
                  output_padding=(1, 1, 0)[:rank])


def test_many_channels_channels_last(rng):
    x, w, b = make(rng, rank=2, c_in=16, c_out_g=16, size=4, k=3)
    run_and_check(to_channels_last(x), w, b, stride=2, padding=1,
                  data_format="channels_last")


# --- data formats and batchedness -------------------------------------------

@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("batched", [True, False])
def test_data_format_and_batching(rng, rank, data_format, batched):
    x, w, b = make(rng, rank=rank, c_in=2, c_out_g=3, size=(3, 2, 2, 2)[:rank],
                   k=2)
    if data_format == "channels_last":
        x = np.ascontiguousarray(to_channels_last(x))
    if not batched:
        x = x[0]
    y = run_and_check(x, w, b, stride=2, padding=(1,) * rank,
                      data_format=data_format)
    assert y.ndim == x.ndim
    c_axis = -1 if data_format == "channels_last" else (1 if batched else 0)
    assert y.shape[c_axis] == 3


def test_channels_last_equals_transposed_channels_first(rng):
    x, w, b = make(rng, rank=2, size=(4, 3), k=3, c_in=4, c_out_g=2, groups=2)
    yf = conv_transpose(x, w, b, stride=2, groups=2)
    yl = conv_transpose(np.ascontiguousarray(to_channels_last(x)), w, b,
                        stride=2, groups=2, data_format="channels_last")
    np.testing.assert_allclose(yl, to_channels_last(yf), rtol=1e-13, atol=1e-13)


def test_unbatched_equals_batch_of_one(rng):
    x, w, b = make(rng, rank=2, n=1)
    y1 = conv_transpose(x, w, b, stride=2)
    y0 = conv_transpose(x[0], w, b, stride=2)
    assert y0.shape == y1.shape[1:]
    np.testing.assert_array_equal(y0, y1[0])


def test_device_cpu_and_auto_agree(rng):
    x, w, b = make(rng, rank=2)
    np.testing.assert_array_equal(conv_transpose(x, w, b, device="cpu"),
                                  conv_transpose(x, w, b, device="auto"))


# --- dtypes -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64,
                                   np.complex128])
@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_native_dtypes(rng, dtype, rank):
    x, w, b = make(rng, rank=rank, size=(4, 3, 2, 2)[:rank], k=2, dtype=dtype)
    y = run_and_check(x, w, b, stride=2, padding=(1,) * rank)
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_is_complex_arithmetic(rng, dtype):
    """Complex products are (a+bi)(c+di), not a real/imag split: with a
    purely imaginary x and weight the result is real and negative."""
    x = np.full((1, 1, 2), 1j, dtype=dtype)
    w = np.full((1, 1, 1), 2j, dtype=dtype)
    y = conv_transpose(x, w)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.full((1, 1, 2), -2, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint64, np.bool_])
def test_integer_and_bool_compute_in_float64(rng, dtype):
    x, w, b = make(rng, rank=2, size=3, k=2, dtype=dtype)
    y = run_and_check(x, w, b, stride=2)
    assert y.dtype == np.float64


def test_integer_inputs_do_not_overflow():
    """int8 200-term sums would wrap in int8; float64 gives the exact value."""
    x = np.full((1, 10, 4), 100, dtype=np.int8)
    w = np.full((10, 1, 3), 100, dtype=np.int8)
    y = conv_transpose(x, w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y[0, 0], [1e5, 2e5, 3e5, 3e5, 2e5, 1e5])


def test_float16_computes_in_float32(rng):
    x, w, b = make(rng, rank=2, size=3, k=3, dtype=np.float16)
    y = run_and_check(x, w, b, stride=2, padding=1)
    assert y.dtype == np.float32
    # float16 values are exact in float32, so the result is the float32 one.
    y32 = conv_transpose(x.astype(np.float32), w.astype(np.float32),
                         b.astype(np.float32), stride=2, padding=1)
    np.testing.assert_array_equal(y, y32)


@pytest.mark.parametrize("x_dtype,w_dtype,b_dtype", [
    (np.float32, np.float64, None),
    (np.float64, np.float32, None),
    (np.float32, np.float32, np.float64),
    (np.float32, np.complex64, None),
    (np.float64, np.complex64, None),
    (np.complex64, np.float32, np.complex128),
    (np.int32, np.float32, None),
    (np.int8, np.float32, None),
    (np.int16, np.float32, None),
    (np.uint8, np.int8, None),
    (np.bool_, np.float32, None),
    (np.float16, np.float32, None),
    (np.float16, np.int8, None),
    (np.float16, np.float16, np.float64),
    (np.int64, np.complex64, None),
    (np.float32, np.float32, np.int64),
])
def test_mixed_dtypes_promote_like_result_type(rng, x_dtype, w_dtype, b_dtype):
    x = random_array(rng, (2, 2, 3, 3), x_dtype)
    w = random_array(rng, (2, 2, 2, 2), w_dtype)
    b = None if b_dtype is None else random_array(rng, (2,), b_dtype)
    expected = compute_dtype(x, w, b)
    y = run_and_check(x, w, b, stride=2)
    assert y.dtype == expected


# --- memory layouts and input kinds -----------------------------------------

def _layouts(x):
    """(name, array holding the same values as x) for odd memory layouts."""
    big = x.astype(x.dtype.newbyteorder(">"))
    ro = x.copy()
    ro.setflags(write=False)
    padded = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    padded[..., ::2] = x
    rev = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    rev_all = np.ascontiguousarray(x[::-1, ::-1, ::-1, ::-1])[::-1, ::-1, ::-1, ::-1]
    return [
        ("big_endian", big),
        ("read_only", ro),
        ("fortran", np.asfortranarray(x)),
        ("strided", padded[..., ::2]),
        ("negative_stride", rev),
        ("negative_strides_all_axes", rev_all),
        ("transposed_view",
         np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)),
        ("nested_list", x.tolist()),
    ]


LAYOUTS = [name for name, _ in _layouts(np.zeros((1, 1, 1, 1)))]


@pytest.mark.parametrize("which,layout", [
    (which, layout) for which in ("x", "weight", "bias") for layout in LAYOUTS
    # these two layouts need more than one axis
    if not (which == "bias" and layout.startswith(("negative_strides_all",
                                                   "transposed")))])
def test_memory_layouts(rng, layout, which):
    x, w, b = make(rng, rank=2, c_in=2, c_out_g=3, size=(4, 3), k=(2, 3))
    expected = conv_transpose(x, w, b, stride=2, padding=1)
    if which == "x":
        x = dict(_layouts(x))[layout]
    elif which == "weight":
        w = dict(_layouts(w))[layout]
    else:
        b4 = dict(_layouts(b.reshape(1, 1, 1, -1)))[layout]
        b = b4[0][0][0] if isinstance(b4, list) else b4[0, 0, 0]
    y = conv_transpose(x, w, b, stride=2, padding=1)
    assert y.dtype == np.float64 and y.dtype.isnative
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_memory_layouts_channels_last(rng, layout):
    x, w, b = make(rng, rank=2, c_in=3, c_out_g=2, size=(3, 4), k=2)
    x = np.ascontiguousarray(to_channels_last(x))
    expected = conv_transpose(x, w, b, stride=(2, 1),
                              data_format="channels_last")
    y = conv_transpose(dict(_layouts(x))[layout], w, b, stride=(2, 1),
                       data_format="channels_last")
    np.testing.assert_array_equal(y, expected)
    assert_matches_reference(y, x, w, b, stride=(2, 1),
                             data_format="channels_last")


def test_channels_last_given_a_channels_first_view(rng):
    """A channels-last view of a channels-first buffer (non-contiguous)."""
    x, w, b = make(rng, rank=2, size=(3, 4), k=2)
    run_and_check(to_channels_last(x), w, b, stride=2,
                  data_format="channels_last")


@pytest.mark.parametrize("dtype", [">f4", ">c8", ">c16", ">i4", ">f2"])
def test_big_endian_dtypes(rng, dtype):
    x, w, b = make(rng, rank=1, size=5, k=3, dtype=np.dtype(dtype).newbyteorder("="))
    xb, wb, bb = (a.astype(dtype) for a in (x, w, b))
    y = conv_transpose(xb, wb, bb, stride=2)
    assert y.dtype.isnative
    assert y.dtype == compute_dtype(x, w, b)
    np.testing.assert_array_equal(y, conv_transpose(x, w, b, stride=2))


def test_nested_lists_everywhere():
    x = [[[1, 2, 3]]]                 # (1, 1, 3) ints
    w = [[[1.0, -1.0]]]               # (1, 1, 2)
    y = conv_transpose(x, w, [0.5], stride=2)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[1.5, -0.5, 2.5, -1.5, 3.5, -2.5]]])


def test_inputs_are_not_modified(rng):
    x, w, b = make(rng, rank=2)
    copies = [a.copy() for a in (x, w, b)]
    conv_transpose(x, w, b, stride=2, padding=1)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


# --- empty batch ------------------------------------------------------------

@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_empty_batch(rng, rank, data_format):
    x, w, b = make(rng, rank=rank, n=0, c_in=2, c_out_g=3, size=2, k=2)
    if data_format == "channels_last":
        x = to_channels_last(x)
    y = conv_transpose(x, w, b, stride=2, data_format=data_format)
    expected = reference(x, w, b, stride=2, data_format=data_format)
    assert y.shape == expected.shape
    assert y.shape[0] == 0 and y.size == 0
    assert y.dtype == np.float64


def test_empty_batch_with_out(rng):
    x, w, _ = make(rng, rank=2, n=0, size=2, k=2, bias=False)
    out = np.empty((0, 3, 4, 4))
    assert conv_transpose(x, w, stride=2, out=out) is out


# --- NaN / Inf --------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_nonfinite_in_x_reaches_only_its_taps(rng, value, rank):
    x, w, b = make(rng, rank=rank, n=2, c_in=2, c_out_g=2, size=3, k=2)
    x[1, 0][(1,) * rank] = value
    kwargs = dict(stride=3, padding=(1,) * rank)
    y = conv_transpose(x, w, b, **kwargs)
    expected = reference(x, w, b, **kwargs)
    assert_same_nonfinite(y, expected)
    # Stride 3 > kernel 2: the untouched batch entry and most outputs stay
    # finite.
    assert np.isfinite(y[0]).all()
    assert np.isfinite(y).sum() > y.size // 2


def test_inf_times_zero_weight_is_nan(rng):
    """The scatter definition multiplies every tap: Inf * 0 = NaN."""
    x = np.array([[[1.0, np.inf, 2.0]]])
    w = np.array([[[1.0, 0.0]]])
    y = conv_transpose(x, w, stride=2)
    expected = reference(x, w, stride=2)
    assert_same_nonfinite(y, expected)
    assert np.isnan(y[0, 0, 3]) and y[0, 0, 2] == np.inf


def test_opposite_infinities_make_nan():
    x = np.array([[[np.inf, np.inf]]])
    w = np.array([[[1.0, -1.0]]])
    y = conv_transpose(x, w)
    assert_same_nonfinite(y, reference(x, w))
    assert y[0, 0, 0] == np.inf and np.isnan(y[0, 0, 1]) and y[0, 0, 2] == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64,
                                   np.complex128])
def test_nonfinite_in_weight_and_bias(rng, dtype):
    x, w, b = make(rng, rank=2, c_in=2, c_out_g=2, size=3, k=2, dtype=dtype)
    w[0, 1, 0, 1] = np.inf
    w[1, 0, 1, 1] = np.nan
    b[1] = -np.inf
    y = conv_transpose(x, w, b, stride=2, padding=1)
    expected = reference(x, w, b, stride=2, padding=1).astype(dtype)
    assert_same_nonfinite(y, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_many_channels(rng, dtype):
    """The same propagation on the many-channel (matrix product) path."""
    x, w, b = make(rng, rank=2, c_in=16, c_out_g=8, size=4, k=3, dtype=dtype)
    x[0, 3, 1, 2] = np.nan
    x[1, 5, 0, 0] = np.inf
    kwargs = dict(stride=3, padding=1)
    y = conv_transpose(x, w, b, **kwargs)
    assert_same_nonfinite(y, reference(x, w, b, **kwargs).astype(dtype))


# --- out= -------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_out_is_filled_and_returned(rng, data_format, dtype):
    x, w, b = make(rng, rank=2, size=3, k=3, dtype=dtype)
    if data_format == "channels_last":
        x = np.ascontiguousarray(to_channels_last(x))
    expected = conv_transpose(x, w, b, stride=2, data_format=data_format)
    out = np.full(expected.shape, np.nan, dtype=dtype)
    y = conv_transpose(x, w, b, stride=2, data_format=data_format, out=out)
    assert y is out
    np.testing.assert_array_equal(out, expected)


def test_out_unbatched_and_reused(rng):
    x, w, b = make(rng, rank=1, n=1, size=4, k=3)
    out = np.empty((3, 9))
    for _ in range(2):   # a second call overwrites, it does not accumulate
        y = conv_transpose(x[0], w, b, stride=2, out=out)
        assert y is out
        assert_matches_reference(out, x[0], w, b, stride=2)


@pytest.mark.parametrize("kind", ["strided", "fortran", "channels_last_view"])
def test_out_with_odd_layout(rng, kind):
    """Any writable ndarray of the right shape and dtype is filled."""
    x, w, b = make(rng, rank=2, size=3, k=2)
    expected = conv_transpose(x, w, b, stride=2)        # (2, 3, 6, 6)
    if kind == "strided":
        out = np.zeros((2, 3, 6, 12))[..., ::2]
    elif kind == "fortran":
        out = np.zeros((2, 3, 6, 6), order="F")
    else:
        out = np.moveaxis(np.zeros((2, 6, 6, 3)), -1, 1)
    assert conv_transpose(x, w, b, stride=2, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_out_with_promoted_dtype(rng):
    x = random_array(rng, (1, 2, 3), np.int32)
    w = random_array(rng, (2, 2, 2), np.float32)
    out = np.empty((1, 2, 4), np.float64)
    assert conv_transpose(x, w, out=out) is out
    assert_matches_reference(out, x, w)


# --- determinism ------------------------------------------------------------

@pytest.mark.parametrize("config", [
    dict(rank=2, c_in=2, c_out_g=3, dtype=np.float32),       # direct
    dict(rank=2, c_in=16, c_out_g=16, dtype=np.float32),     # many channels
    dict(rank=3, c_in=3, c_out_g=2, dtype=np.float64),
    dict(rank=1, c_in=16, c_out_g=8, dtype=np.complex64),
    dict(rank=4, c_in=2, c_out_g=2, dtype=np.float32, size=2, k=2),
], ids=["direct", "gemm", "rank3", "complex", "rank4"])
def test_bitwise_identical_across_calls(rng, config):
    x, w, b = make(rng, n=3, **config)
    rank = config["rank"]
    kwargs = dict(stride=2, padding=(1,) * rank)
    first = conv_transpose(x, w, b, **kwargs)
    for _ in range(4):
        again = conv_transpose(x, w, b, **kwargs)
        assert again.tobytes() == first.tobytes()


@pytest.mark.parametrize("config", [
    dict(rank=2, c_in=2, c_out_g=3, dtype=np.float32),
    dict(rank=2, c_in=16, c_out_g=16, dtype=np.float32),
    dict(rank=4, c_in=2, c_out_g=2, dtype=np.float64, size=2, k=2),
], ids=["direct", "gemm", "rank4"])
def test_bitwise_identical_across_thread_counts(rng, config):
    """Every output is summed in a fixed order by one thread, so the thread
    count cannot change a bit of the result."""
    numba = pytest.importorskip("numba")
    x, w, b = make(rng, n=4, **config)
    kwargs = dict(stride=2, padding=(1,) * config["rank"])
    default = numba.get_num_threads()
    reference_bytes = conv_transpose(x, w, b, **kwargs).tobytes()
    try:
        for threads in range(1, default + 1):
            numba.set_num_threads(threads)
            assert conv_transpose(x, w, b, **kwargs).tobytes() == reference_bytes
    finally:
        numba.set_num_threads(default)


# --- hypothesis: random configurations against the oracle -------------------

@st.composite
def configurations(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    c_out_g = draw(st.integers(1, 3))
    n = draw(st.integers(0, 2))
    in_spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=rank,
                                     max_size=rank)))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=rank,
                                 max_size=rank)))
    stride = tuple(draw(st.lists(st.integers(1, 3), min_size=rank,
                                 max_size=rank)))
    dilation = tuple(draw(st.lists(st.integers(1, 3), min_size=rank,
                                   max_size=rank)))
    pad_kind = draw(st.sampled_from(["int", "ints", "pairs", "valid", "same"]))
    if pad_kind == "int":
        padding = draw(st.integers(0, 2))
    elif pad_kind == "ints":
        padding = tuple(draw(st.lists(st.integers(0, 2), min_size=rank,
                                      max_size=rank)))
    elif pad_kind == "pairs":
        padding = tuple(draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))
                        for _ in range(rank))
    else:
        padding = pad_kind
    limits = [max(s, d) for s, d in zip(stride, dilation)]
    size_kind = draw(st.sampled_from(["none", "output_padding", "output_size"]))
    output_padding, output_extra = 0, None
    if size_kind == "output_padding" and padding != "same":
        output_padding = tuple(draw(st.integers(0, lim - 1)) for lim in limits)
    elif size_kind == "output_size":
        output_extra = tuple(draw(st.integers(0, lim - 1)) for lim in limits)
    kwargs = dict(stride=stride, dilation=dilation, padding=padding,
                  output_padding=output_padding)
    p = explicit_pads(in_spatial, kernel, **kwargs)
    if output_extra is not None:
        base = tuple(o - op for o, op in zip(p["out_spatial"], p["output_padding"]))
        kwargs["output_size"] = tuple(b + e for b, e in zip(base, output_extra))
        p = explicit_pads(in_spatial, kernel, **kwargs)
    assume(min(p["out_spatial"]) >= 1)
    kwargs["groups"] = groups
    kwargs["data_format"] = draw(st.sampled_from(["channels_first",
                                                  "channels_last"]))
    batched = draw(st.booleans())
    has_bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32, np.complex128]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = random_array(rng, (n, c_in) + in_spatial, dtype)
    w = random_array(rng, (c_in, c_out_g) + kernel, dtype)
    b = random_array(rng, (c_out_g * groups,), dtype) if has_bias else None
    if kwargs["data_format"] == "channels_last":
        x = np.ascontiguousarray(to_channels_last(x))
    if not batched:
        if n == 0:
            assume(False)
        x = x[0]
    return x, w, b, kwargs


@given(configurations())
def test_random_configurations_match_reference(config):
    x, w, b, kwargs = config
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
