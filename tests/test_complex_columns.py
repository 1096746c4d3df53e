"""Complex calls on the columns kernel, run on the real views of the complex
arrays (``driver.ran_complex_columns``): the oracle's values, the same bits
channels first and channels last and through a plan, and the twin's
weights never made."""

import numpy as np
import pytest

import numba_deconv
from numba_deconv import api, config, conv_transpose
from numba_deconv.cpu import driver

from helpers import assert_matches_reference, random_array, returns_of
from test_strategies import force

pytestmark = pytest.mark.usefixtures("fresh_routes")

# Ranks 1-3, groups, taps fewer than a vector (9, 8) and more (16, 25: a
# vector and a ragged rest in float32; whole vectors in float64).
CASES = [
    ((2, 6, 5, 4), (6, 5, 4, 4), dict(stride=2, padding=1)),
    ((1, 4, 3, 5), (4, 3, 5, 5), dict(stride=3, padding=(1, 2), output_padding=1)),
    ((2, 8, 7), (8, 3, 9), dict(stride=2, groups=2, dilation=2)),
    ((1, 6, 2, 3, 2), (6, 4, 2, 2, 2), dict(stride=2)),
    ((3, 5, 3, 3), (5, 7, 3, 3), dict(stride=1, padding=1)),
]


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("tasks_per_thread, pack_bytes, in_place_positions",
                         [(1, 1 << 20, 0), (1 << 10, 256, 0), (1, 1 << 20, 1 << 20)],
                         ids=["whole-blocks", "one-channel-blocks", "in-place"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_complex_columns_run_on_the_real_views(x_shape, w_shape, kwargs, tasks_per_thread,
                                               pack_bytes, in_place_positions, dtype,
                                               monkeypatch, rng):
    """Forced onto the columns kernel, a complex call (after the first,
    which compiles it on the twin's weights made whole) runs on the
    arrays' real views: the oracle's values, channels first and last and
    a plan's calls the same bits. With many tasks, blocks of one output
    channel and blocks of a few input channels at a time; with few, whole
    blocks, packed or read in place (from the vector boundary before a
    task's weights, which may be an imaginary part)."""
    force(monkeypatch, "columns", "column_tiles")
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 1)  # every call a twin
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "COLUMNS_PACK_BYTES", pack_bytes)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_K_BLOCK", 3)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_MAX_POSITIONS", in_place_positions)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS", 0)
    ran = returns_of(monkeypatch, driver, "ran_complex_columns")
    made = returns_of(monkeypatch, api, "_twin_weight")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    conv_transpose(x, w, b, **kwargs)  # compiles the kernel for the twin's weights
    ran.clear()
    made.clear()
    y = conv_transpose(x, w, b, **kwargs)
    y_last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    assert ran == [True, True] and not made
    assert_matches_reference(y, x, w, b, **kwargs)
    np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1), y)
    planned = numba_deconv.plan(w, x.shape, dtype, b, **kwargs)
    made.clear()  # (the plan's adjoint, conv, takes its twin's weights)
    for _ in range(2):  # the views packed, then reused
        np.testing.assert_array_equal(planned(x), y)
    assert ran[2:] == [True, True] and not made
    assert "twin" not in planned._forward_weights
    planned_last = numba_deconv.plan(w, x_last.shape, dtype, b, data_format="channels_last",
                                     **kwargs)
    np.testing.assert_array_equal(planned_last(x_last), y_last)


@pytest.mark.parametrize("c_in, c_out", [(443, 273), (886, 546)])  # r37, its complex twin
def test_column_tasks_keep_their_columns_within_the_cap(c_in, c_out, monkeypatch):
    """A columns task takes so few output channels that its columns fit
    ``COLUMNS_TASK_COLUMN_BYTES`` (every block of input channels adds to
    all of them: past L2, r37's twin took 1.3 times as long), as long as
    that still leaves it one channel."""
    from numba_deconv.cpu import work_split
    from numba_deconv.cpu.columns import TILE_POSITIONS

    def layout(cap):
        monkeypatch.setattr(config, "COLUMNS_TASK_COLUMN_BYTES", cap)
        return work_split._columns_layout((11, c_in, 1, 6, 7), (c_in, c_out, 1, 6, 6),
                                          (11, c_out, 1, 25, 29), (1, 4, 4), (1, 1, 1),
                                          (0, 1, 1), 1, 8, 2)

    cap = 1536 << 10
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", 8)
    capped = layout(cap)
    rows = -(-11 * 6 * 7 // TILE_POSITIONS) * TILE_POSITIONS
    assert not capped.in_place and capped.channel_block >= 1
    assert rows * capped.pitch * 8 <= cap
    assert layout(64 << 10).channel_block == 1  # under one channel's columns
