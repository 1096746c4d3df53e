"""Complex calls on the columns kernel and the tap rows, run on the real
views of the complex arrays (``real_views.ran_on_real_views``): the oracle's
values, the same bits channels first and channels last (the columns) and
through a plan, and the twin's weights never made."""

import numpy as np
import pytest

import numba_deconv
from numba_deconv import _compiled, api, config, conv_transpose
from numba_deconv.cpu import real_views

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


def _on_views(monkeypatch, kernel):
    """Every complex call a twin on ``kernel``; what ``ran_on_real_views``
    returns, and the twin's weights made, call by call."""
    force(monkeypatch, "columns", kernel)
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 1)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    return (returns_of(monkeypatch, real_views, "ran_on_real_views"),
            returns_of(monkeypatch, api, "_twin_weight"))


def _arrays(rng, x_shape, w_shape, kwargs, dtype):
    """x, w and a bias of a case."""
    return (random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype),
            random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("tasks_per_thread, pack_bytes, in_place_positions, column_bytes",
                         [(1, 1 << 20, 0, 1 << 20), (1 << 10, 256, 0, 1 << 20),
                          (1, 1 << 20, 1 << 20, 1 << 20), (1, 1 << 20, 0, 2048)],
                         ids=["whole-blocks", "one-channel-blocks", "in-place", "image-ranges"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_complex_columns_run_on_the_real_views(x_shape, w_shape, kwargs, tasks_per_thread,
                                               pack_bytes, in_place_positions, column_bytes,
                                               dtype, monkeypatch, rng):
    """Forced onto the columns kernel, a complex call runs on the arrays'
    real views, the first too (see the test below): the oracle's values,
    channels first and last and a plan's calls the same bits. With many tasks, blocks of one output
    channel and blocks of a few input channels at a time; with few, whole
    blocks, packed or read in place (from the vector boundary before a
    task's weights, which may be an imaginary part); with a task's
    columns capped at 2 KiB, ranges of images."""
    ran, made = _on_views(monkeypatch, "column_tiles")
    monkeypatch.setattr(config, "COLUMNS_TASK_COLUMN_BYTES", column_bytes)
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "COLUMNS_PACK_BYTES", pack_bytes)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_K_BLOCK", 3)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_MAX_POSITIONS", in_place_positions)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS", 0)
    x, w, b = _arrays(rng, x_shape, w_shape, kwargs, dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    first = conv_transpose(x, w, b, **kwargs)
    y = conv_transpose(x, w, b, **kwargs)
    y_last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    assert ran == [True, True, True] and not made
    assert first.tobytes() == y.tobytes()
    assert_matches_reference(y, x, w, b, **kwargs)
    np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1), y)
    planned = numba_deconv.plan(w, x.shape, dtype, b, **kwargs)
    made.clear()  # (the plan's adjoint, conv, takes its twin's weights)
    for _ in range(2):  # the views packed, then reused
        np.testing.assert_array_equal(planned(x), y)
    assert ran[3:] == [True, True] and not made
    assert "twin" not in planned._forward_weights
    planned_last = numba_deconv.plan(w, x_last.shape, dtype, b, data_format="channels_last",
                                     **kwargs)
    np.testing.assert_array_equal(planned_last(x_last), y_last)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES + [
    ((3, 7, 13), (7, 2, 4), dict(stride=4, padding=1, output_padding=1)),  # one tap an output
    ((2, 3, 60), (3, 2, 3), dict(stride=2, padding=1)),  # stretches inside an image
])
def test_complex_tap_rows_run_on_the_real_views(x_shape, w_shape, kwargs, dtype, monkeypatch,
                                                rng):
    """Forced onto the tap rows, a complex call channels first runs on the
    arrays' real views, the first too, and a plan's calls, all with the
    same bits and the oracle's
    values; channels last, on the twin, the oracle's values. Stretches
    across images, and inside one (copied first)."""
    ran, made = _on_views(monkeypatch, "tap_rows")
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 1)
    x, w, b = _arrays(rng, x_shape, w_shape, kwargs, dtype)
    first = conv_transpose(x, w, b, **kwargs)
    y = conv_transpose(x, w, b, **kwargs)
    assert ran == [True, True] and not made
    assert first.tobytes() == y.tobytes()
    assert_matches_reference(y, x, w, b, **kwargs)
    planned = numba_deconv.plan(w, x.shape, dtype, b, **kwargs)
    np.testing.assert_array_equal(planned(x), y)
    assert "twin" not in planned._forward_weights
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    ran.clear()
    y_last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    assert ran == [False]
    assert_matches_reference(np.moveaxis(y_last, -1, 1), x, w, b, **kwargs)


@pytest.mark.parametrize("kernel", ["column_tiles", "tap_rows"])
def test_the_first_complex_call_runs_on_the_views_too(kernel, monkeypatch, rng):
    """With nothing recorded, as in a new process, the first complex call
    compiles (or loads) the kernel and runs on the views, rather than run
    the baseline on the twin meanwhile: the baseline sums as the twin
    does, and a call's bits must not depend on whether its kernel was
    ready."""
    ran, made = _on_views(monkeypatch, kernel)
    monkeypatch.setattr(_compiled, "_COMPILED", {})
    x_shape, w_shape, kwargs = CASES[0]
    x, w, b = _arrays(rng, x_shape, w_shape, kwargs, np.complex64)
    first = conv_transpose(x, w, b, **kwargs)
    assert ran == [True] and not made
    assert first.tobytes() == conv_transpose(x, w, b, **kwargs).tobytes()
    assert_matches_reference(first, x, w, b, **kwargs)


@pytest.mark.parametrize("cap", [960 << 10, 1536 << 10])  # one, two channels' columns
def test_thin_column_tasks_take_ranges_of_images(cap, monkeypatch):
    """Where the output channels whose columns fit the cap fill less than
    two tiles (the parts of a complex 549 -> 190 k4 s2 call on 8 58x5
    images, 32 columns a channel: one channel's in a tile of 48 lanes, two
    channels' in two tiles), the images are split into ranges whose
    columns fit blocks that fill whole tiles, still within the cap; where
    more fit, the images stay whole."""
    from numba_deconv.cpu import work_split
    from numba_deconv.cpu.columns import TILE_POSITIONS
    from numba_deconv.cpu.simd import tile_width

    def layout(cap):
        monkeypatch.setattr(config, "COLUMNS_TASK_COLUMN_BYTES", cap)
        work_split.columns_parts_layout.cache_clear()  # kept per shape
        return work_split.columns_parts_layout((8, 1098, 1, 58, 5), (1098, 380, 1, 4, 4),
                                               (8, 380, 1, 116, 10), (1, 2, 2), (1, 1, 1),
                                               (0, 1, 1), 1, 4, 2)

    thin = layout(cap)
    columns = 2 * 16 * thin.channel_block
    assert thin.image_parts > 1 and columns % tile_width(4) == 0
    rows = -(-8 // thin.image_parts * 2 * 58 * 5 // TILE_POSITIONS) * TILE_POSITIONS
    assert rows * columns * 4 <= cap
    assert layout(8 << 20).image_parts == 1  # 14 channels' columns fit


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
    # Under one channel's columns of the batch: ranges of images whose
    # columns fit.
    small = layout(64 << 10)
    rows = -(-(-(-11 // small.image_parts) * 6 * 7) // TILE_POSITIONS) * TILE_POSITIONS
    assert small.image_parts > 1 and rows * small.pitch * 8 <= 64 << 10
