"""BLAS on channels-last data where it lies (``_blas.run_blas_last``): each
task's product reads its input positions x channels in place, and
``kernels.col2im_last`` folds the columns (each position's taps, each
tap's channels side by side) into the channels-last output."""

import numpy as np
import pytest

from numba_deconv import config, conv_transpose
from numba_deconv.cpu import driver, transpose

from helpers import assert_matches_reference, random_array, returns_of
from test_strategies import CASES, force

pytestmark = pytest.mark.usefixtures("fresh_routes")

# Ranks 1-3 (a rank-4 call runs as slices of rank 3), every padding form.
_RANKS_1_TO_3 = [case for case in CASES if len(case[0]) <= 5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("workspace", [1 << 20, 64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", _RANKS_1_TO_3)
def test_blas_runs_channels_last_in_place(x_shape, w_shape, kwargs, workspace, dtype,
                                          monkeypatch, rng):
    """Forced onto BLAS, a channels-last call gives the oracle's values
    with whole images a task, and with a workspace of 64 bytes, slabs of
    the outermost dim and blocks of output channels, without transposing
    its input or output, from the first call on (BLAS's products are the
    same every call)."""
    force(monkeypatch, "columns", "blas")
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    monkeypatch.setattr(config, "GEMM_MIN_ROWS", 2)
    monkeypatch.setattr(config, "BLAS_LAST_MIN_BLOCK_BYTES", 0)  # blocks of one channel too
    ran_last = returns_of(monkeypatch, driver, "run_blas_last")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    transposed = returns_of(monkeypatch, transpose, "to_channels_first")
    first = conv_transpose(x_last, w, bias, data_format="channels_last", **kwargs)
    y_last = conv_transpose(x_last, w, bias, data_format="channels_last", **kwargs)
    assert ran_last == [True, True] and not transposed
    assert first.tobytes() == y_last.tobytes()
    assert_matches_reference(np.moveaxis(y_last, -1, 1), x, w, bias, **kwargs)


@pytest.mark.parametrize("c_out, dtype, in_place", [
    (8, np.float32, True), (4, np.float64, True), (2, np.float64, False), (2, np.complex128, True),
])
def test_blocks_of_few_channels_read_the_input_as_an_operand(c_out, dtype, in_place,
                                                              monkeypatch, rng):
    """Blocks of at least ``BLAS_LAST_MIN_BLOCK_BYTES`` of output channels
    run where the data lie; narrower ones (whose fold would add a tap's
    channels element by element) run channels first, the input read as a
    transposed operand (no transposed copy) and the output transposed."""
    force(monkeypatch, "columns", "blas")
    monkeypatch.setattr(config, "BLAS_LAST_MIN_BLOCK_BYTES", 32)
    ran_last = returns_of(monkeypatch, driver, "run_blas_last")
    x = random_array(rng, (2, 7, 6, 5), dtype)
    w = random_array(rng, (7, c_out, 3, 3), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    conv_transpose(x_last, w, data_format="channels_last", stride=2)
    ran_last.clear()
    transposed = returns_of(monkeypatch, transpose, "to_channels_first")
    y_last = conv_transpose(x_last, w, data_format="channels_last", stride=2)
    assert ran_last == ([True] if in_place else []) and not transposed
    assert_matches_reference(np.moveaxis(y_last, -1, 1), x, w, stride=2)


def test_col2im_last_sums_each_output_in_tap_order(rng):
    """The fold alone, against its definition: each output is its bias
    plus, in tap order, the column of every tap whose input reaches it
    (``+ 0.0`` where none does), bit for bit."""
    from numba_deconv.cpu.kernels import col2im_last

    in_spatial, kernel = (2, 3, 5), (2, 1, 3)
    stride, dilation, pad = (1, 2, 3), (2, 1, 1), (1, 0, 2)
    channels, c_out, co_first = 3, 5, 1
    out_spatial = tuple((i - 1) * s + d * (k - 1) + 1 - 2 * p
                        for i, k, s, d, p in zip(in_spatial, kernel, stride, dilation, pad))
    taps = int(np.prod(kernel))
    cols = random_array(rng, in_spatial + (taps, channels), np.float64)
    bias = random_array(rng, (c_out,), np.float64)
    bias[co_first] = -0.0
    out = np.full(out_spatial + (c_out,), np.nan)
    col2im_last(cols, bias, out, co_first, 0, 0, out_spatial[0], out_spatial[1], kernel, stride,
                dilation, pad)
    expected = np.full_like(out, np.nan)
    for o in np.ndindex(out_spatial):
        total = np.zeros(channels)
        for t, k in enumerate(np.ndindex(kernel)):
            shifted = [o[d] + pad[d] - k[d] * dilation[d] for d in range(3)]
            if all(s % stride[d] == 0 and 0 <= s // stride[d] < in_spatial[d]
                   for d, s in enumerate(shifted)):
                i = tuple(s // stride[d] for d, s in enumerate(shifted))
                total = total + cols[i + (t,)]
        expected[o + (slice(co_first, co_first + channels),)] = (
            bias[co_first:co_first + channels] + total)
    np.testing.assert_array_equal(out.view(np.uint64), expected.view(np.uint64))
