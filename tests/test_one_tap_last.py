"""``one_tap_last``: channels-last calls with one tap per output phase, or a few, in place.

Each case forces the phase tiles (whose sums the kernel reproduces) and
checks that the channels-last call ran :func:`one_tap_last`, gave the
oracle's values and every bit of the channels-first call: inputs with
NaN, infinities, signed zeros and subnormals, a bias of -0.0, outputs
that no tap reaches and outputs whose tap reads the padding, outputs
that only some of their phase's taps reach, rows cut into stretches at
every boundary, and groups.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv as nd
from helpers import random_array
from numba_deconv import _dispatch, config, plan
from numba_deconv.cpu import driver
from numba_deconv.cpu.one_tap_last import (edge_outputs, laid_out_weights, one_tap_per_phase,
                                          takes_one_tap_last)
from numba_deconv.cpu.simd import VECTOR_BYTES
from reference import reference

pytestmark = pytest.mark.usefixtures("fresh_routes")

SPECIALS = {np.float32: [np.nan, np.inf, -np.inf, -0.0, 1e-40, -1e-40],
            np.float64: [np.nan, np.inf, -np.inf, -0.0, 1e-310, -1e-310]}

# x shape (channels first), output channels a group, kernel, kwargs.
CASES = [
    ((2, 5, 7, 9), 20, (1, 1), {}),  # 1x1: the batch as one row
    ((1, 3, 6, 5, 4), 17, (1, 1, 1), {}),  # 3-D 1x1, channels past a vector
    ((2, 6, 5, 7), 18, (1, 1), dict(stride=3, padding=1, output_padding=2)),  # bias alone
    ((1, 4, 9), 33, (2,), dict(stride=3, dilation=2, output_padding=1)),  # 1-D k2 s3 d2
    ((2, 5, 4, 6), 16, (3, 3), dict(stride=3, padding=1)),  # taps into the padding
    ((1, 3, 5, 6), 24, (2, 3), dict(stride=(2, 3), dilation=(3, 1), padding=(2, 0))),
    ((1, 2, 3, 4, 5), 16, (2, 1, 2), dict(stride=(2, 1, 3))),  # 3-D, mixed strides
    ((2, 8, 6, 5), 16, (2, 2), dict(stride=2, groups=2)),  # groups of whole vectors
    ((1, 6, 5, 7), 20, (1, 3), dict(stride=(1, 4), groups=3)),  # groups mid vector
    # A few taps a phase: each output sums the taps that reach the input.
    ((2, 2, 30), 20, (3,), {}),  # 1-D k3: 3 taps, 2 outputs each end with fewer
    ((1, 3, 20), 17, (4,), dict(stride=2, padding=1, output_padding=1)),
    ((1, 1, 6, 17), 33, (3, 4), dict(stride=(1, 2), dilation=(2, 1), padding=(2, 1))),
    ((1, 1, 3, 4, 16), 16, (2, 2, 3), dict(stride=(1, 2, 2), padding=(1, 0, 1))),  # 3-D
    ((2, 4, 24), 16, (5,), dict(stride=2, groups=2)),  # groups of whole vectors
    ((1, 2, 26), 16, (4,), dict(stride=2, dilation=2)),  # all 4 taps in one phase
]


def _one_tap_runs(monkeypatch):
    """The list each later channels-last call of the phase tiles appends
    to: whether one_tap_last ran it."""
    runs = []
    real = driver._ran_one_tap_last
    monkeypatch.setattr(driver, "_ran_one_tap_last",
                        lambda *args: runs.append(real(*args)) or runs[-1])
    return runs


def _sprinkle(rng, array, values):
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=len(values), replace=False)] = values


@pytest.fixture
def tiles(monkeypatch):
    """The phase tiles forced, every output row cut into stretches of one
    output a phase where there are outputs enough."""
    monkeypatch.setattr(_dispatch, "choose_kernel", lambda *call: ("gather", "phase_tiles",
                                                                   "rows"))
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS_CROWDED", 1)
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 64)


@pytest.mark.parametrize("parallel_min", [0, 1 << 62], ids=["threads", "calling-thread"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, c_out_g, kernel, kwargs", CASES)
def test_one_tap_last_gives_the_channels_first_bits(x_shape, c_out_g, kernel, kwargs, dtype,
                                                    parallel_min, tiles, rng, monkeypatch):
    runs = _one_tap_runs(monkeypatch)
    monkeypatch.setattr(config, "ONE_TAP_LAST_PARALLEL_MIN_BYTES", parallel_min)
    groups = kwargs.get("groups", 1)
    x = random_array(rng, x_shape, dtype)
    _sprinkle(rng, x, SPECIALS[dtype])
    w = random_array(rng, (x_shape[1], c_out_g) + kernel, dtype)
    b = random_array(rng, (c_out_g * groups,), dtype)
    b[0] = -0.0
    first = nd.conv_transpose(x, w, b, **kwargs)
    np.testing.assert_allclose(first, reference(x, w, b, **kwargs), rtol=1e-5, atol=1e-5)
    expected = np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for _ in range(2):  # the first call may go the transposed way, the kernel not yet recorded
        last = nd.conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        assert last.tobytes() == expected
    assert runs and all(runs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_plan_lays_the_weights_out_once(dtype, tiles, rng, monkeypatch):
    """A plan keeps the weights as one_tap_last reads them; its calls give
    the bits of plain calls."""
    runs = _one_tap_runs(monkeypatch)
    x = random_array(rng, (2, 6, 5, 7), dtype)
    w = random_array(rng, (6, 20, 2, 1), dtype)
    b = random_array(rng, (20,), dtype)
    kwargs = dict(stride=(3, 2), padding=(1, 0), data_format="channels_last")
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected = nd.conv_transpose(x_last, w, b, **kwargs).tobytes()
    laid_out = []
    real = driver.PREPARERS["one_tap_last"]
    monkeypatch.setitem(driver.PREPARERS, "one_tap_last",
                        lambda *args: laid_out.append(1) or real(*args))
    p = plan(w, x_last.shape, dtype, bias=b, **kwargs)
    for _ in range(3):
        assert p(x_last).tobytes() == expected
    assert runs and all(runs) and laid_out == [1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w_shape, groups", [((6, 20, 2, 1, 1), 1), ((8, 17, 1, 1, 3), 2),
                                             ((3, 1, 1, 1, 1), 1)])
def test_laid_out_weights_start_on_a_cache_line(dtype, w_shape, groups, rng):
    """The tiles load each tap's weights in whole vectors from the start of
    w_t: from a cache line, no load crosses two (NumPy's arrays start 16
    bytes past one as often as not). The layout holds every weight."""
    w = random_array(rng, w_shape, dtype)
    for _ in range(8):  # (several allocations: any placement)
        w_t, finite = laid_out_weights(w, groups)
        assert finite and w_t.ctypes.data % 64 == 0
    c_in, c_out_g = w_shape[:2]
    pitch = w_t.shape[-1] // groups
    for ci in range(c_in):
        g, ci_g = divmod(ci, c_in // groups)
        got = w_t[..., ci_g, g * pitch:g * pitch + c_out_g]  # (KD, KH, KW, C_out/groups)
        np.testing.assert_array_equal(np.moveaxis(got, -1, 0), w[ci])
        assert not w_t[..., ci_g, g * pitch + c_out_g:(g + 1) * pitch].any()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weights_that_are_not_finite_take_the_tiles_way(bad, tiles, rng, monkeypatch):
    """The phase tiles refuse weights that are not finite (their zero
    padding would multiply them); so does one_tap_last, and the call gives
    the channels-first bits of the fallback."""
    runs = _one_tap_runs(monkeypatch)
    x = random_array(rng, (1, 4, 5, 6), np.float32)
    w = random_array(rng, (4, 16, 1, 1), np.float32)
    w[2, 3, 0, 0] = bad
    first = nd.conv_transpose(x, w, stride=2)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for _ in range(2):
        last = nd.conv_transpose(x_last, w, stride=2, data_format="channels_last")
        assert last.tobytes() == np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    assert runs and not any(runs)


@pytest.mark.parametrize("kernel, stride, dilation, expected", [
    ((1, 1), (1, 1), (1, 1), True),
    ((3,), (3,), (1,), True),
    ((4,), (3,), (1,), False),  # taps 0 and 3 share a phase
    ((2,), (2,), (3,), True),  # taps 0 and 3: phases 0 and 1
    ((2,), (2,), (2,), False),  # taps 0 and 2: one phase
    ((3,), (6,), (4,), True),  # taps 0, 4, 8: phases 0, 4, 2
    ((2, 1), (2, 1), (1, 5), True),
    ((2, 2), (2, 1), (1, 1), False),
])
def test_one_tap_per_phase(kernel, stride, dilation, expected):
    assert one_tap_per_phase(kernel, stride, dilation) == expected


@pytest.mark.parametrize("dtype, c_in_g, c_out_g, kernel, stride, dilation, expected", [
    (np.float32, 14, 39, (1, 1), (1, 1), (1, 1), True),
    (np.float32, 64, 16, (1, 1), (1, 1), (1, 1), True),  # 64 products an output exactly
    (np.float32, 65, 16, (1, 1), (1, 1), (1, 1), False),
    (np.float64, 80, 10, (1, 1), (3, 3), (1, 1), True),  # 80 / 9 products an output
    (np.float32, 128, 64, (2, 2), (2, 2), (1, 1), False),  # 128
    (np.float32, 14, 15, (1, 1), (1, 1), (1, 1), False),  # less than a vector a group
    (np.float64, 14, 8, (1, 1), (1, 1), (1, 1), True),
    (np.complex64, 14, 39, (1, 1), (1, 1), (1, 1), False),
    # Several taps a phase: at most 16 products an output.
    (np.float32, 4, 39, (4,), (1,), (1,), True),  # 16 exactly
    (np.float32, 5, 39, (4,), (1,), (1,), False),
    (np.float32, 8, 39, (4,), (2,), (1,), True),
    (np.float32, 3, 64, (4, 4), (2, 2), (1, 1), True),  # 12
    # Outputs that only some taps reach: 3 taps of step 3 leave 6 at the
    # row's ends, on an input row of 40: too many (at most 40 / 8).
    (np.float32, 1, 39, (3,), (1,), (3,), False),
])
def test_one_tap_last_takes_short_sums_of_whole_vectors(dtype, c_in_g, c_out_g, kernel, stride,
                                                        dilation, expected, monkeypatch):
    monkeypatch.setattr(config, "ONE_TAP_LAST_MAX_MULTIPLY_ADDS", 64)
    monkeypatch.setattr(config, "FEW_TAPS_LAST_MAX_MULTIPLY_ADDS", 16)
    monkeypatch.setattr(config, "ONE_TAP_LAST_MIN_WIDTH_PER_EDGE", 8)
    lanes_f32 = VECTOR_BYTES // 4
    if c_out_g == 15 and lanes_f32 <= 15:
        pytest.skip("vectors of fewer than 16 float32 lanes hold 15 channels")
    assert takes_one_tap_last(dtype, c_in_g, c_out_g, kernel, stride, dilation, 40) == expected


@pytest.mark.parametrize("kernel, stride, dilation, expected", [
    (1, 1, 1, 0),
    (3, 3, 2, 0),  # one tap a phase
    (3, 1, 1, 2),  # taps 0-2 read inputs j, j-1, j-2
    (4, 2, 1, 1),  # two taps a phase, one input apart
    (4, 2, 2, 3),  # all four in one phase
    (3, 1, 3, 6),
])
def test_edge_outputs(kernel, stride, dilation, expected):
    assert edge_outputs(kernel, stride, dilation) == expected
