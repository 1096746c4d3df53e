"""numba_deconv.compat.tensorflow against TensorFlow's results and checks.

The values written out below are TensorFlow's (the documented worked example
of conv2d_transpose, and outputs of TensorFlow 2.21 for other output_shape
choices), so these tests mean something without TensorFlow installed. When
it is installed, random configurations are compared with it directly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from numba_deconv.compat.tensorflow import (conv1d_transpose, conv2d_backprop_input,
                                            conv2d_transpose, conv3d_transpose)

X = np.array([[-67.0, -77.0], [-117.0, -127.0]])
F = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])
X_NHWC = X.reshape(1, 2, 2, 1)
F_TF = F.reshape(3, 3, 1, 1)

# tf.nn.conv2d_transpose(X, F, [1, 5, 5, 1], strides=2, padding="VALID")
Y_VALID_5 = np.array([
    [67, -134, 278, -154, 231],
    [-268, 335, -710, 385, -462],
    [586, -770, 1620, -870, 1074],
    [-468, 585, -1210, 635, -762],
    [819, -936, 1942, -1016, 1143],
], np.float64)


def test_worked_example():
    y = conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, "VALID")
    assert y.shape == (1, 5, 5, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], Y_VALID_5)
    assert y[0, 0, 0, 0] == 67 == -67 * -1  # no kernel flip


def test_worked_example_forms():
    """Every argument form of strides and data_format gives the same numbers."""
    for strides in (2, [2], [2, 2], [1, 2, 2, 1], (2, 2), np.array([2, 2])):
        y = conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], strides, "VALID")
        np.testing.assert_array_equal(y[0, :, :, 0], Y_VALID_5)
    y = conv2d_transpose(X.reshape(1, 1, 2, 2), F_TF, [1, 1, 5, 5], [1, 1, 2, 2],
                         "VALID", data_format="NCHW")
    np.testing.assert_array_equal(y[0, 0], Y_VALID_5)
    y = conv2d_transpose(X_NHWC, F_TF, np.array([1, 5, 5, 1]), 2,
                         [[0, 0], [0, 0], [0, 0], [0, 0]], dilations=[1, 1, 1, 1])
    np.testing.assert_array_equal(y[0, :, :, 0], Y_VALID_5)


def test_backprop_input_is_the_same_computation():
    y = conv2d_backprop_input([1, 5, 5, 1], F_TF, X_NHWC, [1, 2, 2, 1], "VALID")
    np.testing.assert_array_equal(y[0, :, :, 0], Y_VALID_5)
    y = conv2d_backprop_input([5, 5], F_TF, X_NHWC, 2, "VALID")  # spatial sizes only
    np.testing.assert_array_equal(y[0, :, :, 0], Y_VALID_5)


@pytest.mark.parametrize("padding, size, first_column", [
    # Outputs of TensorFlow 2.21 for the worked example's x and filter, stride 2.
    ("SAME", 3, [335, -770, 585]),
    ("SAME", 4, [67, -268, 586, -468]),
    ("VALID", 6, [67, -268, 586, -468, 819, 0]),
])
def test_other_output_shapes(padding, size, first_column):
    y = conv2d_transpose(X_NHWC, F_TF, [1, size, size, 1], 2, padding)
    np.testing.assert_array_equal(y[0, :, 0, 0], first_column)


@pytest.mark.parametrize("padding, reachable", [("SAME", (3, 4)), ("VALID", (5, 6))])
def test_reachable_output_shapes(padding, reachable):
    for size in range(1, 9):
        if reachable[0] <= size <= reachable[1]:
            conv2d_transpose(X_NHWC, F_TF, [1, size, 5 if padding == "VALID" else 4, 1], 2,
                             padding)
        else:
            with pytest.raises(ValueError, match=(
                    rf"output_shape\[1\] \(height\) = {size} does not fit input size 2: "
                    rf".*for input size 2, output_shape\[1\] must be in "
                    rf"{reachable[0]}\.\.{reachable[1]}")):
                conv2d_transpose(X_NHWC, F_TF, [1, size, 4, 1], 2, padding)


def test_design_backprop_example_message():
    """docs/semantics.md, section 6.3: input_sizes 4 with stride 2 and SAME
    gives 2, not 3."""
    with pytest.raises(ValueError, match=(
            r"input_sizes\[1\] \(height\) = 4 does not fit out_backprop size 3: a forward "
            r"convolution with SAME padding, stride 2 and kernel 2 maps 4 to 2, not 3; "
            r"for out_backprop size 3, input_sizes\[1\] must be in 5\.\.6")):
        conv2d_backprop_input([1, 4, 4, 1], np.ones((2, 2, 1, 1)), np.ones((1, 3, 3, 1)),
                              [1, 2, 2, 1], "SAME")


def test_dilation_and_explicit_padding_values():
    """Dilation 2, explicit padding: the scatter definition by hand in 1-D."""
    x = np.array([1.0, 2.0]).reshape(1, 2, 1)
    f = np.array([1.0, 10.0]).reshape(2, 1, 1)
    # Scatter at stride 2, taps at 0 and 2: [1, 0, 10+2, 0, 20].
    y = conv1d_transpose(x, f, [1, 5, 1], 2, "VALID", dilations=2)
    np.testing.assert_array_equal(y[0, :, 0], [1, 0, 12, 0, 20])
    y = conv1d_transpose(x, f, [1, 3, 1], 2, [[0, 0], [1, 1], [0, 0]], dilations=2)
    np.testing.assert_array_equal(y[0, :, 0], [0, 12, 0])
    y = conv1d_transpose(x.transpose(0, 2, 1), f, [1, 1, 5], [1, 1, 2], "VALID",
                         data_format="NCW", dilations=[2])
    np.testing.assert_array_equal(y[0, 0], [1, 0, 12, 0, 20])


def test_conv3d_and_groups():
    x = np.ones((1, 2, 2, 2, 1))
    y = conv3d_transpose(x, np.ones((2, 2, 2, 1, 1)), [1, 4, 4, 4, 1], 2, "SAME")
    np.testing.assert_array_equal(y, np.ones((1, 4, 4, 4, 1)))
    # Groups as TensorFlow infers them: 4 output channels / 2 per group = 2 groups.
    x = np.zeros((1, 1, 1, 2))
    x[..., 1] = 1.0
    f = np.arange(8.0).reshape(1, 1, 2, 4)[..., :2]  # [1, 1, out/groups=2, in=2]
    y = conv2d_transpose(x, f, [1, 1, 1, 4], 1, "VALID")
    np.testing.assert_array_equal(y[0, 0, 0], [0, 0, f[0, 0, 0, 1], f[0, 0, 1, 1]])


@pytest.mark.parametrize("call, match", [
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], [1, 2, 2, 2], "VALID"),
     r"strides=\[1, 2, 2, 2\] sets the batch or channel entry to \(1, 2\)"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], [2, 2, 2], "VALID"),
     r"strides=\[2, 2, 2\] should be an int or a list of 1, 2 or 4 ints; got 3"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 0, "VALID"),
     r"strides=0 must be >= 1"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, "VALID", dilations=[1, 0]),
     r"dilations=\[1, 0\] must be >= 1"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, "FULL"),
     r"padding='FULL' is not a padding"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, [[1, 1], [0, 0], [0, 0], [0, 0]]),
     r"pads the batch or channel dim"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, [[0, 0], [0, 0], [0, 0]]),
     r"explicit padding=.* must be 4 \(before, after\) pairs"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5, 1], 2, "VALID", data_format="NWC"),
     r"data_format='NWC' is not supported; use one of 'NHWC', 'NCHW'"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [1, 5, 5], 2, "VALID"),
     r"output_shape=\[1, 5, 5\] must have 4 entries"),
    (lambda: conv2d_transpose(X_NHWC, F_TF, [2, 5, 5, 1], 2, "VALID"),
     r"output_shape\[0\] \(batch\) = 2 but input has batch 1"),
    (lambda: conv2d_transpose(X_NHWC, np.ones((3, 3, 1, 2)), [1, 5, 5, 1], 2, "VALID"),
     r"input has 1 channels but filters \(3, 3, 1, 2\) expects 2"),
    (lambda: conv2d_transpose(X_NHWC, np.ones((3, 3, 2, 1)), [1, 5, 5, 3], 2, "VALID"),
     r"output_shape\[3\] \(channels\) = 3 must be a multiple of filters.shape\[-2\] = 2"),
    (lambda: conv2d_transpose(X_NHWC, F_TF[0], [1, 5, 5, 1], 2, "VALID"),
     r"filters must be 4-D"),
    (lambda: conv2d_transpose(X, F_TF, [1, 5, 5, 1], 2, "VALID"),
     r"input must be 4-D \(NHWC\)"),
    (lambda: conv1d_transpose(X_NHWC[0], F_TF[0], [2, 9, 1], 2, [[0, 0], [3, 3], [0, 0]]),
     r"output_shape\[1\] \(width\) = 9 does not fit input size 2: a forward convolution "
     r"with explicit padding \[3, 3\], stride 2 and kernel 3 maps 9 to 7, not 2; for "
     r"input size 2, no output_shape\[1\] reaches it"),
    (lambda: conv3d_transpose(np.ones((1, 1, 2, 2, 2)), np.ones((2, 2, 2, 1, 1)),
                              [1, 1, 4, 5, 4], 2, "SAME", data_format="NCDHW", dilations=2),
     r"output_shape\[3\] \(height\) = 5 does not fit input size 2: a forward convolution "
     r"with SAME padding, stride 2 and kernel 2 \(dilation 2, span 3\) maps 5 to 3, not 2; "
     r"for input size 2, output_shape\[3\] must be in 3\.\.4"),
], ids=lambda v: "" if callable(v) else v[:40])
def test_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ----------------------------------------------------------------------------
# Cross-checks with TensorFlow itself (skipped when it is not installed).

@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


def _tf_result(tf, compute):
    """``compute()``, TensorFlow's result, or a skip where TensorFlow's CPU
    kernels refuse the configuration (conv2d_backprop_input with dilation
    > 1 or groups, in TensorFlow 2.21): there is nothing to compare with
    (the NumPy reference tests cover those configurations)."""
    try:
        return compute()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
        if "CPU" not in error.message:
            raise
        pytest.skip(f"TensorFlow's CPU kernels refuse it: {error.message.split('[Op')[0]}")


def _tf_sizes(n, k_eff, s, padding):
    """All output sizes TensorFlow accepts for input size n."""
    if padding == "SAME":
        return range((n - 1) * s + 1, n * s + 1)
    if padding == "VALID":
        return range((n - 1) * s + k_eff, n * s + k_eff)
    total = sum(padding)
    return range(max((n - 1) * s + k_eff - total, 1), n * s + k_eff - total)


TF_CONFIGS = [
    # rank, in spatial, kernel, C_in, C_out, strides, dilations, padding (per dim or str)
    (1, (5,), (3,), 2, 3, (2,), (1,), "SAME"),
    (1, (4,), (4,), 3, 2, (3,), (1,), "VALID"),
    (1, (5,), (3,), 2, 2, (1,), (2,), "SAME"),
    (2, (3, 4), (3, 2), 2, 3, (2, 3), (1, 1), "SAME"),
    (2, (3, 3), (4, 3), 3, 2, (2, 2), (1, 1), "VALID"),
    (2, (4, 3), (3, 3), 2, 2, (2, 1), (1, 1), ((1, 0), (2, 1))),
    (2, (3, 3), (3, 2), 2, 2, (2, 2), (2, 2), "SAME"),
    (2, (3, 4), (2, 3), 2, 2, (1, 2), (3, 1), "VALID"),
    (3, (2, 3, 2), (2, 3, 2), 2, 2, (2, 1, 2), (1, 1, 1), "SAME"),
    (3, (2, 2, 3), (3, 2, 2), 1, 2, (1, 2, 2), (1, 1, 1), "VALID"),
]


def _tf_call(rank):
    return {1: conv1d_transpose, 2: conv2d_transpose, 3: conv3d_transpose}[rank]


@pytest.mark.parametrize("rank, spatial, kernel, cin, cout, strides, dilations, padding",
                         TF_CONFIGS)
def test_against_tensorflow(tf, rank, spatial, kernel, cin, cout, strides, dilations,
                            padding):
    rng = np.random.default_rng(abs(hash((rank, spatial, kernel, strides))) % 2**32)
    x = rng.standard_normal((2, *spatial, cin)).astype(np.float32)
    f = rng.standard_normal((*kernel, cout, cin)).astype(np.float32)
    tf_func = getattr(tf.nn, f"conv{rank}d_transpose")
    ours = _tf_call(rank)
    if isinstance(padding, str):
        tf_padding = padding
        per_dim = [padding] * rank
    else:
        tf_padding = [[0, 0], *map(list, padding), [0, 0]]
        per_dim = list(padding)
    size_choices = [list(_tf_sizes(n, d * (k - 1) + 1, s, p)) for n, k, s, d, p in
                    zip(spatial, kernel, strides, dilations, per_dim)]
    # Every reachable size in dim 0, the extreme sizes in the others.
    shapes = {tuple([o0] + [c[-1] for c in size_choices[1:]]) for o0 in size_choices[0]}
    shapes.add(tuple(c[0] for c in size_choices))
    for out in sorted(shapes):
        output_shape = [2, *out, cout]
        expected = _tf_result(tf, lambda: tf_func(x, f, output_shape, list(strides),
                                                   tf_padding, dilations=list(dilations)).numpy())
        y = ours(x, f, output_shape, list(strides), tf_padding, dilations=list(dilations))
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        # Channels first gives the same numbers, transposed.
        perm = (0, rank + 1, *range(1, rank + 1))
        tf_padding_cf = (tf_padding if isinstance(tf_padding, str) else
                         [[0, 0], [0, 0], *map(list, padding)])
        y_cf = ours(x.transpose(perm), f, [2, cout, *out], list(strides), tf_padding_cf,
                    data_format={1: "NCW", 2: "NCHW", 3: "NCDHW"}[rank],
                    dilations=list(dilations))
        np.testing.assert_allclose(y_cf, expected.transpose(perm), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_accepts_exactly_what_tensorflow_accepts(tf, padding):
    x = np.ones((1, 3, 3, 1), np.float32)
    f = np.ones((3, 2, 1, 1), np.float32)
    for h in range(1, 11):
        try:
            tf.nn.conv2d_transpose(x, f, [1, h, 6, 1], 2, padding)
            tf_ok = True
        except (tf.errors.OpError, ValueError):
            tf_ok = False
        try:
            conv2d_transpose(x, f, [1, h, 6, 1], 2, padding)
            ok = True
        except ValueError:
            ok = False
        assert ok == tf_ok, (padding, h)


@pytest.mark.parametrize("padding, strides, dilations", [("SAME", 2, 1), ("VALID", [2, 3], 1),
                                                      ("SAME", 1, 2)])
def test_backprop_input_against_tensorflow_gradient(tf, padding, strides, dilations):
    """conv2d_backprop_input is the gradient of conv2d with respect to its input."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    f = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.nn.conv2d(xt, f, strides, padding, dilations=dilations)
        dy = rng.standard_normal(out.shape).astype(np.float32)
        loss = tf.reduce_sum(out * dy)
    expected = _tf_result(tf, lambda: tape.gradient(loss, xt).numpy())
    y = conv2d_backprop_input(list(x.shape), f, dy, strides, padding, dilations=dilations)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_groups_against_tensorflow(tf):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    f = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)  # 6 out = 2 groups of 3
    expected = _tf_result(tf, lambda: tf.nn.conv2d_transpose(x, f, [1, 6, 8, 6], 2,
                                                             "SAME").numpy())
    y = conv2d_transpose(x, f, [1, 6, 8, 6], 2, "SAME")
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
