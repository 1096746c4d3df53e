"""One test per bad-input message of conv_transpose.

Every bad argument is a ValueError or TypeError (RuntimeError for a device
that is not there) raised before any kernel runs, whose message names the
argument and its value. The matches check the argument name and the key
phrase, not whole sentences, so rewording stays free.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from numba_deconv import conv_transpose


@pytest.fixture
def x():
    """(N=2, C_in=4, 5, 5)."""
    return np.ones((2, 4, 5, 5))


@pytest.fixture
def w():
    """(C_in=4, C_out/groups=3, 3, 3)."""
    return np.ones((4, 3, 3, 3))


def raises(exc, pattern):
    return pytest.raises(exc, match=pattern)


# --- ranks, channels, groups ------------------------------------------------

@pytest.mark.parametrize("shape", [(4,), (4, 3), ()])
def test_weight_rank_too_small(x, shape):
    with raises(ValueError, r"weight has shape .*at least 3 dims"):
        conv_transpose(x, np.ones(shape))


@pytest.mark.parametrize("shape", [(2, 1, 4, 5, 5), (5,), (5, 5)])
def test_x_rank_wrong(w, shape):
    with raises(ValueError, r"x has shape " + re.escape(str(shape)) + r".*4 dims.*3"):
        conv_transpose(np.ones(shape), w)


def test_channel_mismatch(w):
    with raises(ValueError, r"weight has 4 input channels.*x has 2"):
        conv_transpose(np.ones((1, 2, 5, 5)), w)


def test_channel_mismatch_channels_last(w):
    """channels_last reads C_in from the last axis, not axis 1."""
    with raises(ValueError, r"weight has 4 input channels.*x has 5"):
        conv_transpose(np.ones((1, 4, 5, 5)), w, data_format="channels_last")


def test_channel_mismatch_unbatched(w):
    with raises(ValueError, r"weight has 4 input channels.*x has 5"):
        conv_transpose(np.ones((5, 5, 5)), w)


@pytest.mark.parametrize("groups", [3, 8])
def test_groups_not_dividing_channels(x, w, groups):
    with raises(ValueError, rf"groups={groups} must divide the 4 input channels"):
        conv_transpose(x, w, groups=groups)


@pytest.mark.parametrize("groups", [0, -2])
def test_groups_below_one(x, w, groups):
    with raises(ValueError, rf"groups={groups} must be >= 1"):
        conv_transpose(x, w, groups=groups)


@pytest.mark.parametrize("groups", [2.0, "2", None, True])
def test_groups_not_an_int(x, w, groups):
    with raises(TypeError, r"groups=.*must be an int"):
        conv_transpose(x, w, groups=groups)


@pytest.mark.parametrize("shape", [(4, 3, 0, 3), (4, 3, 3, 0)])
def test_empty_kernel(x, shape):
    with raises(ValueError, r"weight shape .*empty kernel"):
        conv_transpose(x, np.ones(shape))


def test_weight_without_output_channels(x):
    with raises(ValueError, r"weight shape \(4, 0, 3, 3\) has no channels"):
        conv_transpose(x, np.ones((4, 0, 3, 3)))


def test_x_without_channels():
    with raises(ValueError, r"no channels|input channels"):
        conv_transpose(np.ones((1, 0, 5, 5)), np.ones((0, 3, 3, 3)))


def test_empty_spatial_input_is_an_empty_sum_or_no_output(w):
    """No input positions: the outputs the kernel still spans are an
    empty sum (zeros, plus a bias); where it spans none, no output."""
    y = conv_transpose(np.ones((1, 4, 0, 5)), w)
    assert y.shape == (1, w.shape[1], w.shape[2] - 1, 5 + w.shape[3] - 1) and not y.any()
    with raises(ValueError, r"padding=.*leaves no output in spatial dim 0"):
        conv_transpose(np.ones((1, 4, 0, 5)), w, padding=w.shape[2])


# --- stride / dilation ------------------------------------------------------

@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value,bad", [(0, 0), (-1, -1), ((1, 0), 0),
                                       ([2, -3], -3)])
def test_stride_dilation_below_one(x, w, name, value, bad):
    with raises(ValueError, rf"{name}=.* must be >= 1 .*got {bad}"):
        conv_transpose(x, w, **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, 2.0, "2", None, True])
def test_stride_dilation_not_an_int(x, w, name, value):
    with raises(TypeError, rf"{name}=.*must be an int or a sequence of 2 ints"):
        conv_transpose(x, w, **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [(1.5, 2), (2, 2.0), (1, None), (True, 1)])
def test_stride_dilation_entries_not_ints(x, w, name, value):
    with raises(TypeError, rf"{name}=.*must hold integers"):
        conv_transpose(x, w, **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation", "output_padding"])
@pytest.mark.parametrize("value", [(1,), (1, 1, 1), []])
def test_per_dim_tuple_wrong_length(x, w, name, value):
    with raises(ValueError, rf"{name}=.* has {len(value)} entries; expected an int or 2 ints"):
        conv_transpose(x, w, **{name: value})


# --- padding ----------------------------------------------------------------

@pytest.mark.parametrize("padding", [-1, (0, -1)])
def test_negative_padding(x, w, padding):
    with raises(ValueError, r"padding=.* must be >= 0"):
        conv_transpose(x, w, padding=padding)


def test_negative_padding_in_pair(x, w):
    with raises(ValueError, r"padding=.* must be >= 0 in every dim; got \(1, -2\)"):
        conv_transpose(x, w, padding=((0, 0), (1, -2)))


@pytest.mark.parametrize("padding", ["full", "SAME_LOWER", "", "causal"])
def test_bad_padding_string(x, w, padding):
    with raises(ValueError, rf"padding='{padding}' is not a padding mode.*'valid', 'same'"):
        conv_transpose(x, w, padding=padding)


@pytest.mark.parametrize("padding", [(1, 2, 3), (1,), ((1, 1),),
                                     ((0, 0), (0, 0), (0, 0))])
def test_padding_wrong_length(x, w, padding):
    with raises(ValueError, rf"padding=.* has {len(padding)} entries; expected"):
        conv_transpose(x, w, padding=padding)


@pytest.mark.parametrize("padding", [((1, 2, 3), (0, 0)), ((1,), (0, 0)),
                                     ((1.0, 2), (0, 0)), ((0, 0), (1, "2"))])
def test_malformed_padding_pair(x, w, padding):
    with raises(ValueError, r"padding=.*entry .* is not a \(before, after\) pair"):
        conv_transpose(x, w, padding=padding)


@pytest.mark.parametrize("padding", [((0, 0), 1.5), (None, 1)])
def test_padding_entry_wrong_type(x, w, padding):
    with raises(TypeError, r"padding=.*entry .* must be an int or a \(before, after\) pair"):
        conv_transpose(x, w, padding=padding)


@pytest.mark.parametrize("padding", [1.5, None, {"a": 1}])
def test_padding_wrong_type(x, w, padding):
    with raises(TypeError, r"padding=.*must be 'valid', 'same', an int"):
        conv_transpose(x, w, padding=padding)


def test_padding_leaves_no_output(w):
    # (5-1)*1 + 2 + 1 = 7 full; pads 4 + 3 leave 0.
    with raises(ValueError, r"padding=.* leaves no output in spatial dim 1"):
        conv_transpose(np.ones((1, 4, 5, 5)), w, padding=((0, 0), (4, 3)))


# --- output_padding / output_size -------------------------------------------

@pytest.mark.parametrize("stride,dilation,op", [(1, 1, 1), (2, 1, 2), (2, 3, 3),
                                               (3, 2, (0, 5))])
def test_output_padding_too_large(x, w, stride, dilation, op):
    with raises(ValueError, r"output_padding=.* must be smaller than "
                            r"max\(stride, dilation\)"):
        conv_transpose(x, w, stride=stride, dilation=dilation, output_padding=op)


def test_output_padding_negative(x, w):
    with raises(ValueError, r"output_padding=-1 must be >= 0"):
        conv_transpose(x, w, stride=2, output_padding=-1)


@pytest.mark.parametrize("op", [1.0, "1", (1, 0.5)])
def test_output_padding_not_int(x, w, op):
    with raises(TypeError, r"output_padding="):
        conv_transpose(x, w, stride=2, output_padding=op)


def test_output_padding_with_same(x, w):
    with raises(ValueError, r"output_padding=1 cannot be combined with padding='same'"):
        conv_transpose(x, w, stride=2, padding="same", output_padding=1)


def test_output_size_with_output_padding(x, w):
    with raises(ValueError, r"output_padding=1 or output_size=.*not both"):
        conv_transpose(x, w, stride=2, output_padding=1, output_size=(12, 12))


@pytest.mark.parametrize("size,bad,dim", [((10, 11), 10, 0), ((11, 13), 13, 1),
                                          ((1, 11), 1, 0)])
def test_output_size_out_of_range(x, w, size, bad, dim):
    # base (5-1)*2 + 3 = 11; reachable 11..12
    with raises(ValueError, rf"output_size=.*size {bad} in spatial dim {dim} "
                            r"is not reachable.*reachable sizes are 11\.\.12"):
        conv_transpose(x, w, stride=2, output_size=size)


def test_output_size_out_of_range_full_shape(x, w):
    with raises(ValueError, r"output_size=.*size 14 in spatial dim 1.*11\.\.12"):
        conv_transpose(x, w, stride=2, output_size=(2, 3, 12, 14))


@pytest.mark.parametrize("size", [(3, 3, 12, 12), (2, 4, 12, 12)])
def test_output_size_full_shape_mismatch(x, w, size):
    with raises(ValueError, r"output_size=.*full output shape.*does not match"):
        conv_transpose(x, w, stride=2, output_size=size)


@pytest.mark.parametrize("size", [(12,), (1, 2, 12, 12, 1)])
def test_output_size_wrong_length(x, w, size):
    with raises(ValueError, rf"output_size=.* has {len(size)} entries"):
        conv_transpose(x, w, stride=2, output_size=size)


@pytest.mark.parametrize("size", [(0, 12), (-1, 12)])
def test_output_size_not_positive(x, w, size):
    with raises(ValueError, r"output_size=.* must be >= 1"):
        conv_transpose(x, w, stride=2, output_size=size)


@pytest.mark.parametrize("size", [(11.0, 12), "12", 11.5])
def test_output_size_not_ints(x, w, size):
    with raises(TypeError, r"output_size="):
        conv_transpose(x, w, stride=2, output_size=size)


# --- bias -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4,), (1, 3), (3, 1), (), (6,)])
def test_bias_wrong_shape(x, w, shape):
    with raises(ValueError, r"bias has shape .*expected \(3,\)"):
        conv_transpose(x, w, np.ones(shape))


def test_bias_wrong_shape_with_groups(x):
    # groups=2: C_out = 2 * 3 = 6
    with raises(ValueError, r"bias has shape \(3,\); expected \(6,\)"):
        conv_transpose(x, np.ones((4, 3, 3, 3)), np.ones(3), groups=2)


# --- dtypes -----------------------------------------------------------------

@pytest.mark.parametrize("which", ["x", "weight", "bias"])
@pytest.mark.parametrize("bad", [
    lambda a: a.astype(str),
    lambda a: a.astype(object),
    lambda a: a.astype("datetime64[s]"),
    lambda a: a.astype("timedelta64[s]"),
], ids=["str", "object", "datetime", "timedelta"])
def test_non_numeric_dtype(x, w, which, bad):
    b = np.ones(3)
    args = dict(x=x, weight=w, bias=b)
    args[which] = bad(args[which].astype(np.int64))
    with raises(TypeError, rf"{which} has dtype .*not numeric"):
        conv_transpose(args["x"], args["weight"], args["bias"])


def test_none_is_not_an_array(w):
    with raises(TypeError, r"x has dtype object"):
        conv_transpose(None, w)


def test_ragged_nested_list(w):
    with raises(TypeError, r"x cannot be read as a numeric array"):
        conv_transpose([[[1.0, 2.0], [3.0]]], np.ones((1, 1, 2)))


@pytest.mark.skipif(np.dtype(np.longdouble) == np.dtype(np.float64),
                    reason="longdouble is float64 on this platform")
@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_extended_precision_is_rejected(x, w, dtype):
    with raises(TypeError, r"dtype .* not supported.*float32, float64"):
        conv_transpose(x.astype(dtype), w)


# --- data_format / padding_mode / device ------------------------------------

@pytest.mark.parametrize("fmt", ["NHWC", "channels-last", "", None, 1])
def test_bad_data_format(x, w, fmt):
    with raises(ValueError, rf"data_format={re.escape(repr(fmt))} is not a data format"
                            r".*'channels_first'.*'channels_last'"):
        conv_transpose(x, w, data_format=fmt)


@pytest.mark.parametrize("mode", ["zero", "constant", "wrap", None])
def test_bad_padding_mode(x, w, mode):
    with raises(ValueError, rf"padding_mode={re.escape(repr(mode))} is not a padding mode"
                            r".*'zeros', 'circular', 'reflect', 'replicate'"):
        conv_transpose(x, w, padding_mode=mode)


@pytest.mark.parametrize("device", ["gpu", "CPU", "", None, 0])
def test_bad_device(x, w, device):
    with raises(ValueError, rf"device={re.escape(repr(device))} is not a device"):
        conv_transpose(x, w, device=device)


def _cuda_usable():
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:
        return False


@pytest.mark.skipif(_cuda_usable(), reason="a CUDA GPU is available here")
def test_cuda_without_gpu_is_runtime_error(x, w):
    with raises(RuntimeError, r"(?i)cuda.*(gpu|backend)|(gpu|backend).*cuda"):
        conv_transpose(x, w, device="cuda")


# --- out= -------------------------------------------------------------------

def test_out_not_an_array(x, w):
    with raises(TypeError, r"out must be a numpy.ndarray of shape \(2, 3, 7, 7\)"):
        conv_transpose(x, w, out=np.zeros((2, 3, 7, 7)).tolist())


@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (2, 3, 49), (1, 3, 7, 7),
                                   (2, 7, 7, 3)])
def test_out_wrong_shape(x, w, shape):
    with raises(ValueError, rf"out has shape {re.escape(str(shape))}; the result "
                            r"has shape \(2, 3, 7, 7\)"):
        conv_transpose(x, w, out=np.zeros(shape))


def test_out_wrong_shape_channels_last(x, w):
    x_last = np.moveaxis(x, 1, -1)
    with raises(ValueError, r"out has shape \(2, 3, 7, 7\); the result has shape "
                            r"\(2, 7, 7, 3\)"):
        conv_transpose(x_last, w, data_format="channels_last",
                       out=np.zeros((2, 3, 7, 7)))


@pytest.mark.parametrize("dtype", [np.float32, np.complex128, np.int64,
                                   np.float16])
def test_out_wrong_dtype(x, w, dtype):
    with raises(TypeError, r"out has dtype .*the result has dtype float64"):
        conv_transpose(x, w, out=np.zeros((2, 3, 7, 7), dtype))


def test_out_read_only(x, w):
    out = np.zeros((2, 3, 7, 7))
    out.setflags(write=False)
    with raises(ValueError, r"out is read-only"):
        conv_transpose(x, w, out=out)


# --- errors come before any computation -------------------------------------

@pytest.mark.parametrize("bad", [
    dict(bias=np.ones(4)),
    dict(padding="full"),
    dict(output_size=(20, 20)),
    dict(padding_mode="reflect", padding=3),  # 3 on a 1-wide output
    dict(groups=3),
], ids=lambda d: next(iter(d)))
def test_out_untouched_on_error(x, w, bad):
    out = np.full((2, 3, 7, 7), -123.0)
    kwargs = dict(out=out)
    bias = bad.pop("bias", None)
    kwargs.update(bad)
    with pytest.raises((ValueError, TypeError)):
        conv_transpose(x, w, bias, **kwargs)
    assert (out == -123.0).all()
