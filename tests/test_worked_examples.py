"""The worked examples of docs/semantics.md, section 6, with their values.

Each expected value is written out as published (by the TensorFlow and
PyTorch examples in the seed articles), checked against the library and,
separately, against the oracle in ``reference.py`` so a wrong oracle cannot
silently agree with a wrong library.
"""

from __future__ import annotations

import numpy as np
import pytest

from numba_deconv import conv_transpose
from reference import reference

# --- TensorFlow conv2d_transpose, 2x2 -> 5x5, stride 2, VALID --------------

TF_X = np.array([[-67.0, -77.0], [-117.0, -127.0]])
TF_FILTER = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])
TF_FIRST_ROW = [67, -134, 278, -154, 231]
TF_LAST_ROW = [819, -936, 1942, -1016, 1143]
TF_CENTRE = 1620


def tf_arrays():
    """x as TF's NHWC (1, 2, 2, 1), the filter as TF's [kh, kw, out, in] and
    as our weight [in, out, kh, kw] (the same numbers, transposed)."""
    x_nhwc = TF_X.reshape(1, 2, 2, 1)
    tf_filter = TF_FILTER.reshape(3, 3, 1, 1)
    weight = tf_filter.transpose(3, 2, 0, 1)
    return x_nhwc, tf_filter, weight


def check_tf_values(y55):
    y55 = np.asarray(y55)
    assert y55.shape == (5, 5)
    np.testing.assert_array_equal(y55[0], TF_FIRST_ROW)
    np.testing.assert_array_equal(y55[-1], TF_LAST_ROW)
    assert y55[2, 2] == TF_CENTRE
    # The first element is x[0,0] * filter[0,0]: the kernel is not flipped.
    assert y55[0, 0] == TF_X[0, 0] * TF_FILTER[0, 0] == 67


def test_tf_example_weight_is_tf_filter_transposed():
    _, tf_filter, weight = tf_arrays()
    assert weight.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(weight[0, 0], tf_filter[:, :, 0, 0])


def test_tf_example_oracle():
    x_nhwc, _, weight = tf_arrays()
    y = reference(x_nhwc, weight, stride=2, padding="valid",
                  data_format="channels_last")
    assert y.shape == (1, 5, 5, 1)
    check_tf_values(y[0, :, :, 0])


@pytest.mark.parametrize("padding", ["valid", 0, ((0, 0), (0, 0))])
def test_tf_example_channels_last(padding):
    x_nhwc, _, weight = tf_arrays()
    y = conv_transpose(x_nhwc, weight, stride=2, padding=padding,
                       data_format="channels_last")
    assert y.shape == (1, 5, 5, 1)
    check_tf_values(y[0, :, :, 0])
    np.testing.assert_array_equal(
        y, reference(x_nhwc, weight, stride=2, padding="valid",
                     data_format="channels_last"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128,
                                   np.int64])
def test_tf_example_channels_first(dtype):
    _, _, weight = tf_arrays()
    x = TF_X.reshape(1, 1, 2, 2).astype(dtype)
    y = conv_transpose(x, weight.astype(dtype), stride=2)
    assert y.shape == (1, 1, 5, 5)
    # All values are small integers: exact in every dtype.
    check_tf_values(y[0, 0].real)


def test_tf_example_output_size_5x5():
    """TF passes output_shape=[1, 5, 5, 1]; 5 is the base size here."""
    x_nhwc, _, weight = tf_arrays()
    y = conv_transpose(x_nhwc, weight, stride=2, padding="valid",
                       output_size=(1, 5, 5, 1), data_format="channels_last")
    check_tf_values(y[0, :, :, 0])


def test_tf_example_unbatched():
    _, _, weight = tf_arrays()
    y = conv_transpose(TF_X.reshape(1, 2, 2), weight, stride=2)
    assert y.shape == (1, 5, 5)
    check_tf_values(y[0])


# --- PyTorch ConvTranspose2d(8, 8, kernel_size=4, stride=2, padding=1) ----

TORCH_FIRST_ROW = [16, 48, 48, 80, 80, 112, 112, 64]
TORCH_LAST_ROW = [208, 432, 432, 464, 464, 496, 496, 256]


def torch_arrays():
    x = np.tile(np.arange(1.0, 17.0).reshape(4, 4), (1, 8, 1, 1))  # (1, 8, 4, 4)
    weight = np.full((8, 8, 4, 4), 2.0)
    return x, weight


def check_torch_values(y):
    assert y.shape == (1, 8, 8, 8)
    for c in range(8):
        np.testing.assert_array_equal(y[0, c, 0], TORCH_FIRST_ROW)
        np.testing.assert_array_equal(y[0, c, -1], TORCH_LAST_ROW)
        np.testing.assert_array_equal(y[0, c], y[0, 0])


def test_torch_example_oracle():
    x, weight = torch_arrays()
    check_torch_values(reference(x, weight, stride=2, padding=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_example(dtype):
    x, weight = torch_arrays()
    y = conv_transpose(x.astype(dtype), weight.astype(dtype), stride=2,
                       padding=1)
    assert y.dtype == dtype
    check_torch_values(y)
    np.testing.assert_array_equal(y, reference(x, weight, stride=2, padding=1))


def test_torch_example_channels_last():
    x, weight = torch_arrays()
    y = conv_transpose(np.moveaxis(x, 1, -1), weight, stride=2, padding=1,
                       data_format="channels_last")
    check_torch_values(np.moveaxis(y, -1, 1))


# --- TF conv2d_backprop_input(input_sizes=[1,4,4,1], ..., SAME) -----------

def test_inconsistent_same_sizes_are_a_clear_error():
    """A 3x3 out_backprop at stride 2 with SAME gives 6x6 (reachable 6..7),
    never the 4x4 TF was asked for: we say so, naming both sizes."""
    x = np.ones((1, 3, 3, 1))
    weight = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"output_size.*\b4\b.*6\.\.7"):
        conv_transpose(x, weight, stride=2, padding="same",
                       output_size=(4, 4), data_format="channels_last")
